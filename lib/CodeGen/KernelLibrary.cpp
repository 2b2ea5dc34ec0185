//===- KernelLibrary.cpp - plan -> EmitC -> C++ -> cached shared libraries ===//
#include "qopt/CodeGen/KernelLibrary.h"

#include "qopt-rt/kernels/QGemm.h"
#include "qopt-rt/kernels/gen/Registry.h"

#include "mlir/Dialect/EmitC/IR/EmitC.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Target/Cpp/CppEmitter.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Process.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/SHA256.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>
#include <chrono>
#include <tuple>
#include <unistd.h>

using namespace mlir;

namespace qopt::codegen {

namespace {

auto key(const GemmShape &s) {
  return std::make_tuple(s.bits, s.groupSize, s.symmetric, s.rows, s.cols);
}

/// Compiler flags of each instruction set: the same ones the runtime's own
/// per-ISA kernel files are built with (runtime/src/kernels/Kernels.cmake).
std::vector<std::string> isaFlags(const std::string &isa) {
  if (isa == "avx2")
    return {"-mavx2", "-mfma", "-mf16c", "-DQRT_GEN_ISA=QRT_GEN_ISA_AVX2"};
  if (isa == "avx512")
    return {"-mavx512f", "-mavx512bw", "-mavx512vl", "-mfma", "-mf16c",
            "-DQRT_GEN_ISA=QRT_GEN_ISA_AVX512"};
  if (isa == "avx512vnni")
    return {"-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512vnni", "-mfma", "-mf16c",
            "-DQRT_GEN_ISA=QRT_GEN_ISA_AVX512VNNI"};
  return {};
}

std::string envOr(const char *name, const std::string &fallback) {
  std::optional<std::string> v = llvm::sys::Process::GetEnv(name);
  return v && !v->empty() ? *v : fallback;
}

std::string defaultCacheDir() {
  if (auto v = llvm::sys::Process::GetEnv("QOPT_CACHE_DIR"); v && !v->empty())
    return *v;
  if (auto v = llvm::sys::Process::GetEnv("XDG_CACHE_HOME"); v && !v->empty())
    return *v + "/qopt";
  if (auto v = llvm::sys::Process::GetEnv("HOME"); v && !v->empty())
    return *v + "/.cache/qopt";
  return "/tmp/qopt-cache-" + std::to_string(::getuid());
}

std::string resolveCompiler(const std::string &given, std::string *error) {
  std::string cxx = given.empty() ? envOr("QOPT_CXX", QOPT_DEFAULT_CXX) : given;
  if (llvm::sys::fs::can_execute(cxx))
    return cxx;
  if (auto found = llvm::sys::findProgramByName(cxx.empty() ? "c++" : cxx))
    return *found;
  if (auto found = llvm::sys::findProgramByName("c++"))
    return *found;
  *error = "no C++ compiler to build the kernels ('" + cxx +
           "' not found; set QOPT_CXX, or pass -no-kernel-codegen)";
  return "";
}

std::string resolveIncludeDir(const std::string &given, std::string *error) {
  std::string dir = given.empty() ? envOr("QOPT_RUNTIME_INCLUDE", QOPT_RUNTIME_INCLUDE_DIR) : given;
  if (llvm::sys::fs::exists(dir + "/qopt-rt/kernels/gen/Specialize.h"))
    return dir;
  *error = "the runtime's kernel templates are not in '" + dir +
           "' (qopt-rt/kernels/gen/Specialize.h; set QOPT_RUNTIME_INCLUDE)";
  return "";
}

/// Runs `argv` (argv[0] = program); its stdout+stderr go to `logPath`.
bool startProcess(const std::vector<std::string> &argv, const std::string &logPath,
                  llvm::sys::ProcessInfo *pi, std::string *error) {
  std::vector<llvm::StringRef> args(argv.begin(), argv.end());
  std::optional<llvm::StringRef> redirects[] = {std::nullopt, llvm::StringRef(logPath),
                                                llvm::StringRef(logPath)};
  bool failed = false;
  *pi = llvm::sys::ExecuteNoWait(argv[0], args, std::nullopt, redirects, 0, error, &failed);
  return !failed && pi->Pid != llvm::sys::ProcessInfo::InvalidPid;
}

/// The first `maxLines` lines of a file (compiler diagnostics).
std::string head(const std::string &path, int maxLines) {
  auto buf = llvm::MemoryBuffer::getFile(path);
  if (!buf)
    return "";
  llvm::SmallVector<llvm::StringRef> lines;
  (*buf)->getBuffer().split(lines, '\n', maxLines + 1, false);
  std::string out;
  for (int i = 0; i < int(lines.size()) && i < maxLines; ++i)
    out += "\n  " + lines[i].str();
  return out;
}

/// Output of `cxx --version` (part of the cache key: another compiler,
/// another library).
std::string compilerIdentity(const std::string &cxx) {
  llvm::SmallString<128> tmp;
  if (llvm::sys::fs::createTemporaryFile("qopt-cxx-version", "txt", tmp))
    return cxx;
  llvm::sys::ProcessInfo pi;
  std::string err, out = cxx;
  if (startProcess({cxx, "--version"}, tmp.str().str(), &pi, &err)) {
    llvm::sys::Wait(pi, std::nullopt, &err);
    if (auto buf = llvm::MemoryBuffer::getFile(tmp))
      out += "\n" + (*buf)->getBuffer().str();
  }
  llvm::sys::fs::remove(tmp);
  return out;
}

/// Adds every file under `dir` (sorted, recursively) to the hash: the
/// generated code includes the kernel templates, so editing them must
/// miss the cache.
void hashTree(llvm::SHA256 &h, const std::string &dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (llvm::sys::fs::recursive_directory_iterator it(dir, ec), end; it != end && !ec;
       it.increment(ec))
    if (it->type() == llvm::sys::fs::file_type::regular_file)
      files.push_back(it->path());
  std::sort(files.begin(), files.end());
  for (const std::string &f : files)
    if (auto buf = llvm::MemoryBuffer::getFile(f)) {
      h.update(llvm::sys::path::filename(f));
      h.update((*buf)->getBuffer());
    }
}

} // namespace

std::vector<GemmShape> normalizePlan(std::vector<GemmShape> shapes) {
  std::sort(shapes.begin(), shapes.end(),
            [](const GemmShape &a, const GemmShape &b) { return key(a) < key(b); });
  std::vector<GemmShape> out;
  for (GemmShape &s : shapes) {
    if (!out.empty() && key(out.back()) == key(s))
      out.back().users.insert(out.back().users.end(), s.users.begin(), s.users.end());
    else
      out.push_back(std::move(s));
  }
  for (GemmShape &s : out) {
    std::sort(s.users.begin(), s.users.end());
    s.users.erase(std::unique(s.users.begin(), s.users.end()), s.users.end());
  }
  return out;
}

std::vector<std::string> kernelIsasForTarget(const std::string &target) {
  using qrt::kernels::Isa;
  if (target == "x86-64-v4")
    return {"avx512", "avx512vnni"};
  if (target == "x86-64-v3")
    return {"avx2"};
  if (target != "cpu")
    return {};
  // The host: the best path its kernels would take (QRT_ISA honoured).
  Isa best = qrt::kernels::bestIsa();
  if (best == Isa::Avx2 || best == Isa::Avx512 || best == Isa::Avx512Vnni)
    return {qrt::kernels::isaName(best)};
  return {};
}

OwningOpRef<ModuleOp> lowerPlanToEmitC(MLIRContext &ctx, const std::vector<GemmShape> &plan) {
  ctx.getOrLoadDialect<emitc::EmitCDialect>();
  OpBuilder b(&ctx);
  Location loc = b.getUnknownLoc();
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  b.setInsertionPointToEnd(module->getBody());
  b.create<emitc::VerbatimOp>(
      loc, "// Generated by qopt: the GEMM kernels of one model, specialized per packed\n"
           "// weight shape (docs/codegen.md). Compile with -DQRT_GEN_ISA=... and the\n"
           "// matching -m flags; the runtime loads the result next to weights.bin.");
  b.create<emitc::IncludeOp>(loc, "qopt-rt/kernels/gen/Specialize.h", false);

  auto regType = emitc::PointerType::get(emitc::OpaqueType::get(&ctx, "qrt::kernels::gen::GenRegistry"));
  auto fnType = b.getFunctionType({regType}, {});
  auto fn = b.create<emitc::FuncOp>(loc, qrt::kernels::gen::kRegisterSymbol, fnType);
  // Exported with C linkage and default visibility (the library is built
  // with -fvisibility=hidden: this is its only symbol).
  fn.setSpecifiersAttr(
      b.getStrArrayAttr({"extern \"C\"", "__attribute__((visibility(\"default\")))"}));
  Block *body = fn.addEntryBlock();
  b.setInsertionPointToEnd(body);
  Value reg = body->getArgument(0);
  b.create<emitc::CallOpaqueOp>(loc, TypeRange{}, "qrt::kernels::gen::begin", ValueRange{reg});
  for (const GemmShape &s : plan) {
    std::string users;
    for (size_t i = 0; i < s.users.size(); ++i) {
      if (i == 4) {
        users += ", ... (" + std::to_string(s.users.size()) + " weights)";
        break;
      }
      users += (i ? ", " : "") + s.users[i];
    }
    b.create<emitc::VerbatimOp>(
        loc, "// " + std::to_string(s.rows) + " x " + std::to_string(s.cols) + ", int" +
                 std::to_string(s.bits) +
                 (s.groupSize ? " g" + std::to_string(s.groupSize) : std::string(" per-channel")) +
                 (s.symmetric ? " symmetric" : "") + (users.empty() ? "" : ": " + users));
    ArrayAttr templateArgs = b.getArrayAttr(
        {b.getI32IntegerAttr(s.bits), b.getI32IntegerAttr(s.groupSize),
         b.getI32IntegerAttr(s.symmetric ? 1 : 0), b.getI64IntegerAttr(s.rows),
         b.getI64IntegerAttr(s.cols)});
    b.create<emitc::CallOpaqueOp>(loc, TypeRange{}, "qrt::kernels::gen::add", ValueRange{reg},
                                  ArrayAttr(), templateArgs);
  }
  b.create<emitc::ReturnOp>(loc, Value());
  return module;
}

bool emitKernelSource(const std::vector<GemmShape> &plan, std::string *source,
                      std::string *error) {
  MLIRContext ctx;
  OwningOpRef<ModuleOp> module = lowerPlanToEmitC(ctx, plan);
  if (failed(verify(*module))) {
    *error = "kernel code generation: the EmitC module does not verify";
    return false;
  }
  std::string text;
  llvm::raw_string_ostream os(text);
  if (failed(emitc::translateToCpp(*module, os))) {
    *error = "kernel code generation: EmitC could not print the module as C++";
    return false;
  }
  *source = std::move(text);
  return true;
}

bool buildKernelLibraries(const std::vector<GemmShape> &plan, const std::vector<std::string> &isas,
                          const KernelBuildOptions &options, KernelLibraryFiles *out,
                          std::string *error) {
  *out = KernelLibraryFiles();
  for (const std::string &isa : isas)
    if (isaFlags(isa).empty()) {
      *error = "kernel code generation: unknown instruction set '" + isa + "'";
      return false;
    }
  std::string source;
  if (!emitKernelSource(plan, &source, error))
    return false;
  std::string cxx = resolveCompiler(options.cxx, error);
  if (cxx.empty())
    return false;
  std::string include = resolveIncludeDir(options.includeDir, error);
  if (include.empty())
    return false;
  std::string cache = options.cacheDir.empty() ? defaultCacheDir() : options.cacheDir;

  // argv per ISA with the paths left out (they differ per entry, the key
  // must not).
  auto argvFor = [&](const std::string &isa, const std::string &src, const std::string &so) {
    std::vector<std::string> argv = {cxx,     "-std=c++17", "-O3",   "-fPIC", "-shared",
                                     "-fvisibility=hidden",  "-s",    "-w",    "-I" + include};
    for (const std::string &f : isaFlags(isa))
      argv.push_back(f);
    argv.insert(argv.end(), {src, "-o", so});
    return argv;
  };

  llvm::SHA256 h;
  h.update("qopt-kernels/abi" + std::to_string(qrt::kernels::gen::kGenAbiVersion) + "\n");
  h.update(source);
  h.update(compilerIdentity(cxx));
  for (const std::string &isa : isas)
    for (const std::string &a : argvFor(isa, "SRC", "OUT"))
      h.update(a + "\n");
  hashTree(h, include + "/qopt-rt/kernels");
  out->hash = llvm::toHex(h.final(), /*LowerCase=*/true);
  out->directory = cache + "/kernels/" + out->hash;
  out->sourcePath = out->directory + "/kernels.cpp";
  for (const std::string &isa : isas)
    out->libraries[isa] = out->directory + "/" + isa + ".so";

  bool complete = llvm::sys::fs::exists(out->sourcePath);
  for (auto &[isa, so] : out->libraries)
    complete = complete && llvm::sys::fs::exists(so);
  if (complete) {
    out->cacheHit = true;
    return true;
  }

  // Build in a private directory, then rename it into place: a concurrent
  // qopt either wins the rename or finds the finished entry.
  auto start = std::chrono::steady_clock::now();
  const std::string tmp = out->directory + ".tmp-" + std::to_string(::getpid());
  llvm::sys::fs::remove_directories(tmp);
  if (auto ec = llvm::sys::fs::create_directories(tmp)) {
    *error = "kernel cache '" + tmp + "': " + ec.message();
    return false;
  }
  auto cleanup = [&] { llvm::sys::fs::remove_directories(tmp); };
  {
    std::error_code ec;
    llvm::raw_fd_ostream os(tmp + "/kernels.cpp", ec);
    if (!ec)
      os << source;
    if (ec || os.has_error()) {
      *error = "kernel cache '" + tmp + "/kernels.cpp': cannot write";
      cleanup();
      return false;
    }
  }
  std::vector<llvm::sys::ProcessInfo> procs;
  for (const std::string &isa : isas) {
    llvm::sys::ProcessInfo pi;
    if (!startProcess(argvFor(isa, tmp + "/kernels.cpp", tmp + "/" + isa + ".so"),
                      tmp + "/" + isa + ".log", &pi, error)) {
      *error = "cannot run the C++ compiler '" + cxx + "': " + *error;
      for (auto &p : procs)
        llvm::sys::Wait(p, std::nullopt);
      cleanup();
      return false;
    }
    procs.push_back(pi);
  }
  std::string failure;
  for (size_t i = 0; i < procs.size(); ++i) {
    std::string msg;
    llvm::sys::ProcessInfo r = llvm::sys::Wait(procs[i], std::nullopt, &msg);
    if (r.ReturnCode != 0 && failure.empty())
      failure = "compiling the " + isas[i] + " kernels with '" + cxx + "' failed (exit " +
                std::to_string(r.ReturnCode) + (msg.empty() ? "" : ", " + msg) +
                "):" + head(tmp + "/" + isas[i] + ".log", 8);
  }
  if (!failure.empty()) {
    *error = failure;
    cleanup();
    return false;
  }
  for (const std::string &isa : isas)
    llvm::sys::fs::remove(tmp + "/" + isa + ".log");
  if (auto ec = llvm::sys::fs::rename(tmp, out->directory)) {
    // Another process finished the same entry first: use it.
    cleanup();
    if (!llvm::sys::fs::exists(out->sourcePath)) {
      *error = "kernel cache '" + out->directory + "': " + ec.message();
      return false;
    }
  }
  out->seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return true;
}

} // namespace qopt::codegen
