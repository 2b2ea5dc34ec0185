//===- WeightStore.cpp - named tensors outside the IR -----------------===//
#include "qopt/Weights/WeightStore.h"

#include "qopt-rt/half.h"

#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace qopt {

size_t dtypeSize(DType t) {
  switch (t) {
  case DType::F64:
  case DType::I64:
    return 8;
  case DType::F32:
  case DType::I32:
    return 4;
  case DType::F16:
  case DType::BF16:
  case DType::I16:
    return 2;
  case DType::I8:
  case DType::U8:
  case DType::Bool:
    return 1;
  }
  return 0;
}

const char *dtypeName(DType t) {
  switch (t) {
  case DType::F32: return "f32";
  case DType::F16: return "f16";
  case DType::BF16: return "bf16";
  case DType::F64: return "f64";
  case DType::I8: return "i8";
  case DType::U8: return "ui8";
  case DType::I16: return "i16";
  case DType::I32: return "i32";
  case DType::I64: return "i64";
  case DType::Bool: return "i1";
  }
  return "?";
}

bool isFloat(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::F64;
}

std::shared_ptr<MappedFile> MappedFile::open(const std::string &path, std::string *error) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    *error = path + ": cannot open: " + std::strerror(errno);
    return nullptr;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    *error = path + ": not a regular file";
    ::close(fd);
    return nullptr;
  }
  std::shared_ptr<MappedFile> m(new MappedFile());
  m->path_ = path;
  m->size_ = size_t(st.st_size);
  if (m->size_ > 0) {
    void *p = mmap(nullptr, m->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      *error = path + ": cannot map: " + std::strerror(errno);
      ::close(fd);
      return nullptr;
    }
    m->data_ = static_cast<const uint8_t *>(p);
  }
  ::close(fd);
  return m;
}

MappedFile::~MappedFile() {
  if (data_)
    munmap(const_cast<uint8_t *>(data_), size_);
}

int64_t WeightEntry::numElements() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d;
  return n;
}

/// Element count of `shape`, or -1 if a dimension is negative or the
/// product overflows (a patched header must not wrap to a small size).
static int64_t checkedElements(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0)
      return -1;
    if (d != 0 && n > INT64_MAX / d)
      return -1;
    n *= d;
  }
  return n;
}

static bool checkSize(const WeightEntry &e, std::string *error) {
  int64_t n = checkedElements(e.shape);
  if (n < 0 || uint64_t(n) > UINT64_MAX / dtypeSize(e.dtype)) {
    *error = e.source + ": tensor '" + e.name + "' has an invalid or overflowing shape";
    return false;
  }
  if (uint64_t(n) * dtypeSize(e.dtype) != e.nbytes) {
    *error = e.source + ": tensor '" + e.name + "' holds " + std::to_string(e.nbytes) +
             " bytes but its shape and dtype need " +
             std::to_string(uint64_t(n) * dtypeSize(e.dtype));
    return false;
  }
  if (e.transposed && e.shape.size() != 2) {
    *error = e.source + ": tensor '" + e.name + "' is marked transposed but is not 2-D";
    return false;
  }
  return true;
}

bool WeightStore::addMapped(WeightEntry entry, std::shared_ptr<MappedFile> file,
                            std::string *error) {
  if (entries_.count(entry.name)) {
    *error = entry.source + ": duplicate tensor '" + entry.name + "'";
    return false;
  }
  if (!checkSize(entry, error))
    return false;
  if (entry.nbytes) {
    const uint8_t *lo = file->data(), *hi = file->data() + file->size();
    if (!entry.data || entry.data < lo || entry.data > hi ||
        entry.nbytes > size_t(hi - entry.data)) {
      *error = entry.source + ": tensor '" + entry.name +
               "' lies outside the file's bytes";
      return false;
    }
  }
  std::string name = entry.name;
  entries_[name] = Slot{std::move(entry), std::move(file)};
  return true;
}

bool WeightStore::addExternal(WeightEntry entry, std::shared_ptr<const void> keepAlive,
                              std::string *error) {
  if (entries_.count(entry.name)) {
    *error = entry.source + ": duplicate tensor '" + entry.name + "'";
    return false;
  }
  if (!checkSize(entry, error))
    return false;
  std::string name = entry.name;
  entries_[name] = Slot{std::move(entry), std::move(keepAlive)};
  return true;
}

bool WeightStore::addOwned(const std::string &name, DType dtype, std::vector<int64_t> shape,
                           std::vector<uint8_t> bytes, std::string *error,
                           const std::string &source) {
  if (entries_.count(name)) {
    *error = source + ": duplicate tensor '" + name + "'";
    return false;
  }
  auto owned = std::make_shared<std::vector<uint8_t>>(std::move(bytes));
  WeightEntry e;
  e.name = name;
  e.dtype = dtype;
  e.shape = std::move(shape);
  e.data = owned->data();
  e.nbytes = owned->size();
  e.source = source;
  if (!checkSize(e, error))
    return false;
  entries_[name] = Slot{std::move(e), std::move(owned)};
  return true;
}

bool WeightStore::rename(const std::string &from, const std::string &to) {
  auto it = entries_.find(from);
  if (it == entries_.end() || entries_.count(to))
    return false;
  Slot s = std::move(it->second);
  entries_.erase(it);
  s.entry.name = to;
  entries_[to] = std::move(s);
  return true;
}

void WeightStore::erase(const std::string &name) { entries_.erase(name); }

const WeightEntry *WeightStore::find(const std::string &name) const {
  auto it = entries_.find(name);
  return it == entries_.end() ? nullptr : &it->second.entry;
}

std::vector<std::string> WeightStore::names() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (auto &kv : entries_)
    out.push_back(kv.first);
  return out;
}

static float loadAsF32(DType t, const uint8_t *p, size_t i) {
  switch (t) {
  case DType::F32: {
    float f;
    std::memcpy(&f, p + 4 * i, 4);
    return f;
  }
  case DType::F64: {
    double d;
    std::memcpy(&d, p + 8 * i, 8);
    return float(d);
  }
  case DType::BF16: {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    return qrt::bf16ToF32(h);
  }
  case DType::F16: {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    return qrt::f16ToF32(h);
  }
  default:
    return 0.0f;
  }
}

std::vector<float> WeightStore::readF32(const WeightEntry &e) const {
  size_t n = size_t(e.numElements());
  std::vector<float> out(n);
  if (!isFloat(e.dtype) || n == 0)
    return out;
  if (!e.transposed) {
    if (e.dtype == DType::F32)
      std::memcpy(out.data(), e.data, n * 4);
    else
      for (size_t i = 0; i < n; ++i)
        out[i] = loadAsF32(e.dtype, e.data, i);
    return out;
  }
  // Stored [cols, rows]; logical [rows, cols]. Blocked to stay cache-friendly.
  size_t rows = size_t(e.shape[0]), cols = size_t(e.shape[1]);
  const size_t B = 64;
  for (size_t c0 = 0; c0 < cols; c0 += B)
    for (size_t r0 = 0; r0 < rows; r0 += B)
      for (size_t c = c0; c < std::min(cols, c0 + B); ++c)
        for (size_t r = r0; r < std::min(rows, r0 + B); ++r)
          out[r * cols + c] = loadAsF32(e.dtype, e.data, c * rows + r);
  return out;
}

std::vector<float> WeightStore::readF32(const std::string &name) const {
  const WeightEntry *e = find(name);
  return e ? readF32(*e) : std::vector<float>();
}

} // namespace qopt
