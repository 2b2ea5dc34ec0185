//===- SafeTensorsTest.cpp - the safetensors reader on hostile files --===//
//
// One crafted file per way a model file can lie (the loader bugs listed in
// docs/field-notes: oversized header lengths, wrapped shape products,
// offsets past the end, wrong field types, ...): each must give one clear
// line naming the file and tensor, never a crash. Plus writer -> reader
// round trips over every dtype and odd shapes.
//
//===----------------------------------------------------------------------===//
#include "HFTestUtil.h"

#include "qopt/Import/SafeTensors.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

using namespace qopt;
using namespace qopt::test;

namespace {

/// A file: 8-byte length (the header's unless overridden), header, data.
std::string craft(const std::string &header, size_t dataBytes = 0,
                  std::optional<uint64_t> length = std::nullopt) {
  uint64_t n = length ? *length : header.size();
  std::string f(8, '\0');
  for (int i = 0; i < 8; ++i)
    f[i] = char((n >> (8 * i)) & 0xff);
  f += header;
  f += std::string(dataBytes, '\x01');
  return f;
}

/// Parses `bytes` in memory and from a file; both must agree. Returns the
/// error ("" on success) after checking it is one line naming the file.
std::string parseError(const std::string &bytes, SafeTensorsHeader *out = nullptr) {
  SafeTensorsHeader h;
  std::string memError;
  bool memOk = parseSafeTensors(reinterpret_cast<const uint8_t *>(bytes.data()), bytes.size(),
                                "mem.safetensors", &h, &memError);
  TempDir dir;
  std::string path = dir.path + "/x.safetensors";
  writeFile(path, bytes);
  WeightStore store;
  std::string fileError;
  bool fileOk = loadSafeTensors(path, store, &fileError);
  EXPECT_EQ(memOk, fileOk) << memError << " / " << fileError;
  if (memOk) {
    if (out)
      *out = h;
    EXPECT_EQ(store.size(), h.tensors.size());
    return "";
  }
  EXPECT_EQ(memError.find('\n'), std::string::npos) << memError;
  EXPECT_EQ(memError.rfind("mem.safetensors: ", 0), 0u) << memError;
  EXPECT_EQ(fileError.rfind(path + ": ", 0), 0u) << fileError;
  EXPECT_TRUE(store.size() == 0 || !fileOk);
  return memError;
}

#define EXPECT_ERROR(bytes, ...)                                                               \
  do {                                                                                         \
    std::string e_ = parseError(bytes);                                                        \
    EXPECT_FALSE(e_.empty()) << "accepted a bad file";                                          \
    for (const char *s_ : {__VA_ARGS__})                                                       \
      EXPECT_NE(e_.find(s_), std::string::npos) << "error '" << e_ << "' lacks '" << s_ << "'"; \
  } while (0)

const char *kOneF32 = R"({"t":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}})";

TEST(SafeTensors, AcceptsAMinimalFile) {
  SafeTensorsHeader h;
  EXPECT_EQ(parseError(craft(kOneF32, 24), &h), "");
  ASSERT_EQ(h.tensors.size(), 1u);
  EXPECT_EQ(h.tensors[0].name, "t");
  EXPECT_EQ(h.tensors[0].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(h.dataSize, 24u);
}

TEST(SafeTensors, AcceptsEmptyHeaderScalarsZeroSizeAndExtras) {
  EXPECT_EQ(parseError(craft("{}")), "");
  EXPECT_EQ(parseError(craft("  { }  ")), "");
  SafeTensorsHeader h;
  EXPECT_EQ(parseError(craft(R"({"__metadata__":{"format":"pt"},)"
                             R"("s":{"dtype":"F64","shape":[],"data_offsets":[0,8]},)"
                             R"("z":{"dtype":"BF16","shape":[0,7],"data_offsets":[8,8]},)"
                             R"("a\u00e9\n":{"dtype":"BOOL","shape":[3],"data_offsets":[8,11],)"
                             R"("extra":{"nested":[1,2.5e3,true,null,"x"]}}})",
                             11),
                       &h),
            "");
  ASSERT_EQ(h.tensors.size(), 3u);
  EXPECT_EQ(h.tensors[2].name, "a\xc3\xa9\n");
  ASSERT_EQ(h.metadata.size(), 1u);
  EXPECT_EQ(h.metadata[0].second, "pt");
}

TEST(SafeTensors, RejectsTruncatedAndOversizedHeaders) {
  EXPECT_ERROR(std::string("abc"), "too small");
  EXPECT_ERROR(std::string(), "too small");
  // The length field says 2^63, 100 MB + 1, or more than the file holds.
  EXPECT_ERROR(craft(kOneF32, 24, uint64_t(1) << 63), "exceeds the limit");
  EXPECT_ERROR(craft(kOneF32, 24, kSafeTensorsMaxHeaderBytes + 1), "exceeds the limit");
  EXPECT_ERROR(craft(kOneF32, 0, 100000), "runs past the end of the file");
  EXPECT_ERROR(craft(kOneF32, 24, UINT64_MAX), "exceeds the limit");
  // A header cut short: the JSON ends early.
  EXPECT_ERROR(craft(kOneF32, 24, 20), "safetensors header");
}

TEST(SafeTensors, RejectsNonJSONHeaders) {
  EXPECT_ERROR(craft("hello world"), "not a JSON object");
  EXPECT_ERROR(craft("[1,2,3]"), "not a JSON object");
  EXPECT_ERROR(craft(""), "not a JSON object");
  EXPECT_ERROR(craft("{\"t\":"), "'t'", "must be an object");
  EXPECT_ERROR(craft(R"({"t":{"dtype":"F32","x":)"), "unexpected end");
  EXPECT_ERROR(craft(std::string(kOneF32) + "xyz", 24), "unexpected bytes after");
  EXPECT_ERROR(craft(std::string(kOneF32) + std::string(3, '\0'), 24), "unexpected bytes after");
  EXPECT_ERROR(craft("{\"t\xff\":1}"), "not valid UTF-8");
  EXPECT_ERROR(craft("{\"a\",1}"), "expected ':'");
  EXPECT_ERROR(craft(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},})", 4),
               "expected a string");
  EXPECT_ERROR(craft("{\"t\\q\":1}"), "invalid escape");
  EXPECT_ERROR(craft("{\"t\\ud800\":1}"), "surrogate");
  EXPECT_ERROR(craft("{\"t\x01\":1}"), "control character");
}

TEST(SafeTensors, RejectsWrongFieldTypes) {
  EXPECT_ERROR(craft(R"({"t":5})"), "'t'", "must be an object");
  EXPECT_ERROR(craft(R"({"t":{"dtype":5,"shape":[1],"data_offsets":[0,4]}})", 4), "'t'",
               "'dtype' must be a string");
  EXPECT_ERROR(craft(R"({"t":{"dtype":"F32","shape":"big","data_offsets":[0,4]}})", 4), "'t'",
               "'shape' must be an array");
  EXPECT_ERROR(craft(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":{"a":1}}})", 4), "'t'",
               "'data_offsets' must be an array");
  EXPECT_ERROR(craft(R"({"t":{"dtype":"F32","shape":["1"],"data_offsets":[0,4]}})", 4), "'t'",
               "must be integers");
  EXPECT_ERROR(craft(R"({"t":{"dtype":"F32","shape":[2.5],"data_offsets":[0,4]}})", 4), "'t'",
               "must be integers");
  EXPECT_ERROR(craft(R"({"t":{"dtype":"F32","shape":[1e3],"data_offsets":[0,4]}})", 4), "'t'",
               "must be integers");
  EXPECT_ERROR(craft(R"({"t":{"dtype":"F32","shape":[true],"data_offsets":[0,4]}})", 4), "'t'",
               "must be integers");
  EXPECT_ERROR(craft(R"({"__metadata__":{"format":1}})"), "must be a string");
  EXPECT_ERROR(craft(R"({"__metadata__":[1]})"), "must be an object");
  EXPECT_ERROR(craft(R"({"__metadata__":{},"__metadata__":{}})"), "appears twice");
  EXPECT_ERROR(craft(R"({"__metadata__":{"a":"1","a":"2"}})"), "appears twice");
}

TEST(SafeTensors, RejectsMissingAndDuplicateFields) {
  EXPECT_ERROR(craft(R"({"t":{"shape":[1],"data_offsets":[0,4]}})", 4), "'t'", "missing 'dtype'");
  EXPECT_ERROR(craft(R"({"t":{"dtype":"F32","data_offsets":[0,4]}})", 4), "missing 'shape'");
  EXPECT_ERROR(craft(R"({"t":{"dtype":"F32","shape":[1]}})", 4), "missing 'data_offsets'");
  EXPECT_ERROR(craft(R"({"t":{"dtype":"F32","dtype":"F16","shape":[1],"data_offsets":[0,4]}})", 4),
               "'dtype' appears twice");
  EXPECT_ERROR(craft(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}})", 8),
               "more than 2 entries");
  EXPECT_ERROR(craft(R"({"t":{"dtype":"F32","shape":[1],"data_offsets":[4]}})", 8),
               "must be [begin, end]");
}

TEST(SafeTensors, RejectsUnknownAndUnsupportedDTypes) {
  EXPECT_ERROR(craft(R"({"w":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}})", 4), "'w'",
               "unknown dtype 'F33'");
  EXPECT_ERROR(craft(R"({"w":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}})", 4), "'w'",
               "unsupported dtype 'F8_E4M3'");
  EXPECT_ERROR(craft(R"({"w":{"dtype":"f32","shape":[1],"data_offsets":[0,4]}})", 4),
               "unknown dtype 'f32'");
}

TEST(SafeTensors, RejectsNegativeAndOverflowingShapes) {
  EXPECT_ERROR(craft(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4), "'w'",
               "must not be negative");
  EXPECT_ERROR(craft(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[-4,4]}})", 4), "'w'",
               "must not be negative");
  // A dimension patched to 2^42+1 next to others wraps a naive byte count.
  EXPECT_ERROR(craft(R"({"w":{"dtype":"F32","shape":[4398046511105,4398046511105],)"
                     R"("data_offsets":[0,4]}})",
                     4),
               "'w'", "overflows 64 bits");
  // 2^62 x 4 bytes = 2^64 wraps to 0: must not match data_offsets [0, 0].
  EXPECT_ERROR(craft(R"({"w":{"dtype":"F32","shape":[4611686018427387904],)"
                     R"("data_offsets":[0,0]}})"),
               "overflows 64 bits");
  EXPECT_ERROR(craft(R"({"w":{"dtype":"F32","shape":[99999999999999999999],)"
                     R"("data_offsets":[0,4]}})",
                     4),
               "too large for 64 bits");
  EXPECT_ERROR(craft(R"({"w":{"dtype":"F32","shape":[],"data_offsets":[0,18446744073709551615]}})",
                     4),
               "too large for 64 bits");
  std::string rank65 = "[";
  for (int i = 0; i < 65; ++i)
    rank65 += i ? ",1" : "1";
  EXPECT_ERROR(craft(R"({"w":{"dtype":"F32","shape":)" + rank65 + R"(],"data_offsets":[0,4]}})", 4),
               "more than 64 entries");
}

TEST(SafeTensors, RejectsBadOffsets) {
  EXPECT_ERROR(craft(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8), "'w'",
               "hold 8 bytes", "needs 12");
  EXPECT_ERROR(craft(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})", 8), "'w'",
               "run past the end of the file");
  EXPECT_ERROR(craft(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[1000000,1000004]}})", 8),
               "run past the end");
  EXPECT_ERROR(craft(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 8),
               "end before they begin");
  // Two tensors over the same bytes are accepted (read-only aliasing).
  EXPECT_EQ(parseError(craft(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                             R"("b":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})",
                             4)),
            "");
}

TEST(SafeTensors, RejectsDuplicateNames) {
  EXPECT_ERROR(craft(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                     R"("w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                     8),
               "'w'", "appears twice");
}

TEST(SafeTensors, RejectsDeepNestingWithoutRecursing) {
  std::string deep(200000, '[');
  EXPECT_ERROR(craft(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":)" + deep), "nests deeper");
  EXPECT_ERROR(craft(deep + std::string(200000, ']')), "not a JSON object");
}

TEST(SafeTensors, ErrorNamesArePrintable) {
  std::string e = parseError(
      craft("{\"bad\\u0007name\":{\"dtype\":\"X\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4));
  EXPECT_NE(e.find("bad\\x07name"), std::string::npos) << e;
}

//===----------------------------------------------------------------------===//
// Writer
//===----------------------------------------------------------------------===//

TEST(SafeTensors, RoundTripsEveryDTypeAndOddShapes) {
  std::mt19937 rng(1234);
  TempDir dir;
  std::string path = dir.path + "/rt.safetensors";
  const DType all[] = {DType::F32, DType::F16, DType::BF16, DType::F64, DType::I8,
                       DType::U8,  DType::I16, DType::I32,  DType::I64, DType::Bool};
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<SafeTensorData> tensors;
  int k = 0;
  for (DType t : all)
    for (std::vector<int64_t> shape :
         {std::vector<int64_t>{}, {0}, {1}, {7}, {3, 5}, {2, 0, 3}, {33, 1, 3}}) {
      uint64_t n;
      ASSERT_TRUE(safeTensorByteSize(shape, t, &n));
      std::vector<uint8_t> b(n);
      for (auto &x : b)
        x = uint8_t(rng());
      bytes.push_back(std::move(b));
      tensors.push_back({{"t" + std::to_string(k++) + "." + safeTensorsDTypeName(t), t, shape},
                         nullptr});
    }
  for (size_t i = 0; i < tensors.size(); ++i)
    tensors[i].data = bytes[i].data();
  std::string error;
  ASSERT_TRUE(writeSafeTensors(path, tensors, {{"format", "pt"}, {"q\"x", "a\\b\n"}}, &error))
      << error;

  SafeTensorsFile f;
  ASSERT_TRUE(openSafeTensors(path, &f, &error)) << error;
  EXPECT_EQ(f.header.dataOffset % 8, 0u) << "header not padded to 8 bytes";
  ASSERT_EQ(f.header.metadata.size(), 2u);
  EXPECT_EQ(f.header.metadata[1].first, "q\"x");
  EXPECT_EQ(f.header.metadata[1].second, "a\\b\n");
  ASSERT_EQ(f.header.tensors.size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    WeightEntry e = f.entry(i);
    EXPECT_EQ(e.name, tensors[i].spec.name);
    EXPECT_EQ(e.dtype, tensors[i].spec.dtype);
    EXPECT_EQ(e.shape, tensors[i].spec.shape);
    ASSERT_EQ(e.nbytes, bytes[i].size());
    EXPECT_TRUE(e.nbytes == 0 || std::memcmp(e.data, bytes[i].data(), e.nbytes) == 0) << e.name;
  }
}

TEST(SafeTensors, WriterRejectsBadSpecsAndShortWrites) {
  TempDir dir;
  std::string path = dir.path + "/w.safetensors", error;
  float x[2] = {1, 2};
  EXPECT_FALSE(writeSafeTensors(path, {{{"a", DType::F32, {2}}, x}, {{"a", DType::F32, {2}}, x}},
                                {}, &error));
  EXPECT_NE(error.find("'a'"), std::string::npos) << error;
  EXPECT_FALSE(writeSafeTensors(path, {{{"b", DType::F32, {-2}}, x}}, {}, &error));
  EXPECT_NE(error.find("'b'"), std::string::npos) << error;
  EXPECT_FALSE(
      writeSafeTensors(path, {{{"c", DType::F32, {INT64_MAX, 4}}, x}}, {}, &error));
  {
    SafeTensorsWriter w;
    ASSERT_TRUE(w.open(path, {{"d", DType::F32, {2}}}, {}, &error)) << error;
    EXPECT_EQ(w.remaining(), 8u);
    ASSERT_TRUE(w.append(x, 4, &error));
    EXPECT_FALSE(w.append(x, 8, &error)) << "accepted more bytes than declared";
    EXPECT_FALSE(w.close(&error));
    EXPECT_NE(error.find("wrote 4 of 8"), std::string::npos) << error;
  }
  EXPECT_FALSE(fileExists(path)) << "a partial file was left behind";
}

} // namespace
