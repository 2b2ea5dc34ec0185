//===- KernelLibrary.cpp - plan -> EmitC -> C++ -> cached shared libraries ===//
#include "qopt/CodeGen/KernelLibrary.h"

#include "qopt-rt/kernels/QGemm.h"
#include "qopt-rt/kernels/gen/Registry.h"
#include "qopt-cuda/gen/AbiVersion.h"

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
#include <functional>
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

namespace {

/// qopt-cuda/gen/Registry.h's kRegisterSymbol (that header needs the CUDA
/// headers, which the compiler does not; GenLibraryTest loads what is
/// generated here, so the two cannot drift apart unnoticed).
constexpr const char *kCudaRegisterSymbol = "qopt_cuda_gen_register";

/// The names the generated code uses, per language.
struct EmitNames {
  const char *banner, *include, *registryType, *registerSymbol, *begin, *add;
};

EmitNames emitNames(KernelLanguage language) {
  if (language == KernelLanguage::Cuda)
    return {"// Generated by qopt: the weight-only GEMM kernels of one model, specialized\n"
            "// per packed weight shape (docs/codegen.md). Compile with nvcc for the\n"
            "// artifact's architecture and -DQCUDA_GEN_CC=<compute capability>; the CUDA\n"
            "// runtime loads the result next to weights.bin.",
            "qopt-cuda/gen/Specialize.cuh", "qcuda::gen::GenRegistry",
            kCudaRegisterSymbol, "qcuda::gen::begin", "qcuda::gen::add"};
  return {"// Generated by qopt: the GEMM kernels of one model, specialized per packed\n"
          "// weight shape (docs/codegen.md). Compile with -DQRT_GEN_ISA=... and the\n"
          "// matching -m flags; the runtime loads the result next to weights.bin.",
          "qopt-rt/kernels/gen/Specialize.h", "qrt::kernels::gen::GenRegistry",
          qrt::kernels::gen::kRegisterSymbol, "qrt::kernels::gen::begin",
          "qrt::kernels::gen::add"};
}

} // namespace

OwningOpRef<ModuleOp> lowerPlanToEmitC(MLIRContext &ctx, const std::vector<GemmShape> &plan,
                                       KernelLanguage language) {
  const EmitNames names = emitNames(language);
  ctx.getOrLoadDialect<emitc::EmitCDialect>();
  OpBuilder b(&ctx);
  Location loc = b.getUnknownLoc();
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  b.setInsertionPointToEnd(module->getBody());
  b.create<emitc::VerbatimOp>(loc, names.banner);
  b.create<emitc::IncludeOp>(loc, names.include, false);

  auto regType = emitc::PointerType::get(emitc::OpaqueType::get(&ctx, names.registryType));
  auto fnType = b.getFunctionType({regType}, {});
  auto fn = b.create<emitc::FuncOp>(loc, names.registerSymbol, fnType);
  // Exported with C linkage and default visibility (the library is built
  // with -fvisibility=hidden: this is its only symbol).
  fn.setSpecifiersAttr(
      b.getStrArrayAttr({"extern \"C\"", "__attribute__((visibility(\"default\")))"}));
  Block *body = fn.addEntryBlock();
  b.setInsertionPointToEnd(body);
  Value reg = body->getArgument(0);
  b.create<emitc::CallOpaqueOp>(loc, TypeRange{}, names.begin, ValueRange{reg});
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
    b.create<emitc::CallOpaqueOp>(loc, TypeRange{}, names.add, ValueRange{reg}, ArrayAttr(),
                                  templateArgs);
  }
  b.create<emitc::ReturnOp>(loc, Value());
  return module;
}

bool emitKernelSource(const std::vector<GemmShape> &plan, std::string *source,
                      std::string *error, KernelLanguage language) {
  MLIRContext ctx;
  OwningOpRef<ModuleOp> module = lowerPlanToEmitC(ctx, plan, language);
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

namespace {

/// One cached build: a generated source compiled once per target (ISA or
/// GPU architecture) into <target>.so, keyed by everything that can change
/// the result.
struct CachedBuild {
  std::string source;     ///< generated code
  std::string sourceName; ///< kernels.cpp / kernels.cu
  std::string compiler;   ///< resolved path (diagnostics)
  std::string keyPrefix;  ///< ABI tag, compiler identity
  std::vector<std::string> targets;
  /// argv for one target (paths passed in, so the key can use placeholders).
  std::function<std::vector<std::string>(const std::string &target, const std::string &src,
                                         const std::string &so)>
      argv;
  std::vector<std::string> hashedTrees; ///< template directories the code includes
  std::string what;                     ///< "C++" / "CUDA" (messages)
};

bool buildCached(const CachedBuild &b, const std::string &cache, KernelLibraryFiles *out,
                 std::string *error) {
  llvm::SHA256 h;
  h.update(b.keyPrefix);
  h.update(b.source);
  for (const std::string &t : b.targets)
    for (const std::string &a : b.argv(t, "SRC", "OUT"))
      h.update(a + "\n");
  for (const std::string &tree : b.hashedTrees)
    hashTree(h, tree);
  out->hash = llvm::toHex(h.final(), /*LowerCase=*/true);
  out->directory = cache + "/kernels/" + out->hash;
  out->sourcePath = out->directory + "/" + b.sourceName;
  for (const std::string &t : b.targets)
    out->libraries[t] = out->directory + "/" + t + ".so";

  bool complete = llvm::sys::fs::exists(out->sourcePath);
  for (auto &[t, so] : out->libraries)
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
  const std::string src = tmp + "/" + b.sourceName;
  {
    std::error_code ec;
    llvm::raw_fd_ostream os(src, ec);
    if (!ec)
      os << b.source;
    if (ec || os.has_error()) {
      *error = "kernel cache '" + src + "': cannot write";
      cleanup();
      return false;
    }
  }
  std::vector<llvm::sys::ProcessInfo> procs;
  for (const std::string &t : b.targets) {
    llvm::sys::ProcessInfo pi;
    if (!startProcess(b.argv(t, src, tmp + "/" + t + ".so"), tmp + "/" + t + ".log", &pi,
                      error)) {
      *error = "cannot run the " + b.what + " compiler '" + b.compiler + "': " + *error;
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
      failure = "compiling the " + b.targets[i] + " kernels with '" + b.compiler +
                "' failed (exit " + std::to_string(r.ReturnCode) +
                (msg.empty() ? "" : ", " + msg) + "):" + head(tmp + "/" + b.targets[i] + ".log", 8);
  }
  if (!failure.empty()) {
    *error = failure;
    cleanup();
    return false;
  }
  for (const std::string &t : b.targets)
    llvm::sys::fs::remove(tmp + "/" + t + ".log");
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

} // namespace

bool buildKernelLibraries(const std::vector<GemmShape> &plan, const std::vector<std::string> &isas,
                          const KernelBuildOptions &options, KernelLibraryFiles *out,
                          std::string *error) {
  *out = KernelLibraryFiles();
  for (const std::string &isa : isas)
    if (isaFlags(isa).empty()) {
      *error = "kernel code generation: unknown instruction set '" + isa + "'";
      return false;
    }
  CachedBuild b;
  if (!emitKernelSource(plan, &b.source, error))
    return false;
  std::string cxx = resolveCompiler(options.cxx, error);
  if (cxx.empty())
    return false;
  std::string include = resolveIncludeDir(options.includeDir, error);
  if (include.empty())
    return false;
  b.sourceName = "kernels.cpp";
  b.compiler = cxx;
  b.what = "C++";
  b.keyPrefix = "qopt-kernels/abi" + std::to_string(qrt::kernels::gen::kGenAbiVersion) + "\n" +
                compilerIdentity(cxx);
  b.targets = isas;
  b.argv = [cxx, include](const std::string &isa, const std::string &src, const std::string &so) {
    std::vector<std::string> argv = {cxx,     "-std=c++17", "-O3",   "-fPIC", "-shared",
                                     "-fvisibility=hidden",  "-s",    "-w",    "-I" + include};
    for (const std::string &f : isaFlags(isa))
      argv.push_back(f);
    argv.insert(argv.end(), {src, "-o", so});
    return argv;
  };
  b.hashedTrees = {include + "/qopt-rt/kernels"};
  return buildCached(b, options.cacheDir.empty() ? defaultCacheDir() : options.cacheDir, out,
                     error);
}

std::string cudaArchForTarget(const std::string &target) {
  if (target == "sm80")
    return "sm_80";
  if (target == "sm89")
    return "sm_89";
  if (target == "sm90")
    return "sm_90a";
  return "";
}

std::string findNvcc(const std::string &given) {
  auto usable = [](const std::string &p) -> std::string {
    if (llvm::sys::fs::can_execute(p) && !llvm::sys::fs::is_directory(p))
      return p;
    if (p.find('/') == std::string::npos)
      if (auto found = llvm::sys::findProgramByName(p))
        return *found;
    return "";
  };
  // An explicit choice (the option, or $QOPT_NVCC) that does not exist is
  // not silently replaced by another compiler.
  const std::string chosen = given.empty() ? envOr("QOPT_NVCC", "") : given;
  if (!chosen.empty())
    return usable(chosen);
  for (const std::string &p : {std::string(QOPT_DEFAULT_NVCC), std::string("nvcc"),
                               std::string("/usr/local/cuda/bin/nvcc")})
    if (!p.empty())
      if (std::string found = usable(p); !found.empty())
        return found;
  return "";
}

bool buildCudaKernelLibrary(const std::vector<GemmShape> &plan, const std::string &arch,
                            const KernelBuildOptions &options, KernelLibraryFiles *out,
                            std::string *error) {
  *out = KernelLibraryFiles();
  // "sm_90a" -> compute capability 90, virtual architecture compute_90a.
  llvm::StringRef digits = llvm::StringRef(arch).drop_front(3).rtrim('a');
  unsigned cc = 0;
  if (!llvm::StringRef(arch).starts_with("sm_") || digits.getAsInteger(10, cc)) {
    *error = "kernel code generation: unknown CUDA architecture '" + arch + "'";
    return false;
  }
  CachedBuild b;
  if (!emitKernelSource(plan, &b.source, error, KernelLanguage::Cuda))
    return false;
  std::string nvcc = findNvcc(options.nvcc);
  if (nvcc.empty()) {
    const std::string chosen = options.nvcc.empty() ? envOr("QOPT_NVCC", "") : options.nvcc;
    *error = chosen.empty() ? "no CUDA compiler (nvcc) to build the GPU kernels (set QOPT_NVCC, "
                              "or pass -no-kernel-codegen)"
                            : "the CUDA compiler '" + chosen + "' (QOPT_NVCC) is not an "
                              "executable";
    return false;
  }
  std::string include =
      options.cudaIncludeDir.empty() ? envOr("QOPT_CUDA_INCLUDE", QOPT_CUDA_INCLUDE_DIR)
                                     : options.cudaIncludeDir;
  if (!llvm::sys::fs::exists(include + "/qopt-cuda/gen/Specialize.cuh")) {
    *error = "the CUDA runtime's kernel templates are not in '" + include +
             "' (qopt-cuda/gen/Specialize.cuh; set QOPT_CUDA_INCLUDE)";
    return false;
  }
  b.sourceName = "kernels.cu";
  b.compiler = nvcc;
  b.what = "CUDA";
  b.keyPrefix = "qopt-cuda-kernels/abi" + std::to_string(qcuda::gen::kGenAbiVersion) + "\n" +
                compilerIdentity(nvcc);
  b.targets = {arch};
  const std::string virt = "compute_" + arch.substr(3);
  b.argv = [nvcc, include, virt, cc](const std::string &target, const std::string &src,
                                     const std::string &so) {
    // SASS for the one architecture (the runtime requires that exact
    // compute capability); the shared CUDA runtime, so the launchers and
    // the executor share one; only qopt_cuda_gen_register visible.
    return std::vector<std::string>{
        nvcc, "-std=c++17", "-O3", "--expt-relaxed-constexpr",
        "-gencode", "arch=" + virt + ",code=" + target,
        "-DQCUDA_GEN_CC=" + std::to_string(cc), "-cudart", "shared", "-shared",
        "-Xcompiler", "-fPIC,-fvisibility=hidden", "-Xlinker", "-s", "-w", "-I" + include,
        src, "-o", so};
  };
  b.hashedTrees = {include + "/qopt-cuda"};
  return buildCached(b, options.cacheDir.empty() ? defaultCacheDir() : options.cacheDir, out,
                     error);
}

} // namespace qopt::codegen
