//===- CpuFeatures.cpp - the ISA features an artifact may require ----------===//
//
// An artifact's manifest names the CPU features its target needs; the
// loader compares them with this machine's. __builtin_cpu_supports also
// checks that the OS saves the wide registers, so a reported feature is
// usable; F16C comes from CPUID (not every compiler's builtin knows it).
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/artifact/Artifact.h"

#include <algorithm>
#include <cstdlib>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#define QRT_ARTIFACT_X86 1
#else
#define QRT_ARTIFACT_X86 0
#endif

namespace qrt {

namespace {

#if QRT_ARTIFACT_X86
bool hasF16C() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d))
    return false;
  return (c & bit_F16C) != 0;
}
#endif

} // namespace

std::vector<std::string> hostCpuFeatures() {
  std::vector<std::string> out;
#if QRT_ARTIFACT_X86
  __builtin_cpu_init();
  // One line per feature: the builtin needs a string literal.
#define QRT_FEATURE(name)                                                                          \
  if (__builtin_cpu_supports(name))                                                                \
    out.push_back(name);
  QRT_FEATURE("avx")
  QRT_FEATURE("avx2")
  QRT_FEATURE("bmi")
  QRT_FEATURE("bmi2")
  if (hasF16C())
    out.push_back("f16c");
  QRT_FEATURE("fma")
  QRT_FEATURE("avx512f")
  QRT_FEATURE("avx512bw")
  QRT_FEATURE("avx512cd")
  QRT_FEATURE("avx512dq")
  QRT_FEATURE("avx512vl")
  QRT_FEATURE("avx512vnni")
#undef QRT_FEATURE
#endif
  // QRT_DISABLE_CPU_FEATURES=avx512f,... hides features (tests of the
  // refusal path, or forcing a lower target): it can only remove.
  if (const char *mask = std::getenv("QRT_DISABLE_CPU_FEATURES")) {
    std::string list = std::string(",") + mask + ",";
    out.erase(std::remove_if(out.begin(), out.end(),
                             [&](const std::string &f) {
                               return list.find("," + f + ",") != std::string::npos;
                             }),
              out.end());
  }
  return out;
}

std::vector<std::string> isaFeatures(const std::string &isa) {
  // The x86-64 micro-architecture levels (psABI), restricted to the
  // features the kernels care about.
  std::vector<std::string> v3 = {"avx", "avx2", "bmi", "bmi2", "f16c", "fma"};
  if (isa == "x86-64-v3")
    return v3;
  if (isa == "x86-64-v4") {
    for (const char *f : {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl"})
      v3.push_back(f);
    return v3;
  }
  return {};
}

} // namespace qrt
