//===- Isa.cpp - which x86 kernel paths this CPU can run -------------------===//
//
// __builtin_cpu_supports checks the OS as well (XSAVE state for the YMM/ZMM
// registers), so a feature it reports is usable. F16C is read from CPUID
// directly: clang's builtin does not know it.
//
//===----------------------------------------------------------------------===//
#include "qopt-rt/kernels/QGemm.h"

#include <cstdlib>
#include <cstring>

#if QRT_KERNELS_X86
#include <cpuid.h>
#endif

namespace qrt::kernels {

namespace {

#if QRT_KERNELS_X86
bool hasF16C() {
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d))
    return false;
  return (c & bit_F16C) != 0;
}

bool detect(Isa isa) {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && hasF16C();
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
  switch (isa) {
  case Isa::Auto:
  case Isa::Scalar:
    return true;
  case Isa::Avx2:
    return avx2;
  case Isa::Avx512:
    return avx512;
  case Isa::Avx512Vnni:
    return avx512 && __builtin_cpu_supports("avx512vnni");
  }
  return false;
}
#else
bool detect(Isa isa) { return isa == Isa::Auto || isa == Isa::Scalar; }
#endif

} // namespace

const char *isaName(Isa isa) {
  switch (isa) {
  case Isa::Auto: return "auto";
  case Isa::Scalar: return "scalar";
  case Isa::Avx2: return "avx2";
  case Isa::Avx512: return "avx512";
  case Isa::Avx512Vnni: return "avx512vnni";
  }
  return "?";
}

bool parseIsa(const std::string &name, Isa *isa) {
  for (Isa i : {Isa::Auto, Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Avx512Vnni})
    if (name == isaName(i)) {
      *isa = i;
      return true;
    }
  return false;
}

bool isaSupported(Isa isa) {
  static const bool supported[5] = {detect(Isa::Auto), detect(Isa::Scalar), detect(Isa::Avx2),
                                    detect(Isa::Avx512), detect(Isa::Avx512Vnni)};
  return supported[int(isa)];
}

Isa bestIsa() {
  static const Isa best = [] {
    Isa forced;
    if (const char *env = std::getenv("QRT_ISA"))
      if (parseIsa(env, &forced) && forced != Isa::Auto && isaSupported(forced))
        return forced;
    for (Isa i : {Isa::Avx512Vnni, Isa::Avx512, Isa::Avx2})
      if (isaSupported(i))
        return i;
    return Isa::Scalar;
  }();
  return best;
}

} // namespace qrt::kernels
