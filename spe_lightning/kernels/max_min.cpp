// Spatial max and min with their first indices, in one pass over a CPU tensor.
//
// PyTorch's CPU argmax/argmin run a scalar loop per row (about 10x the time of amax on
// the 8x8 maps of a CIFAR ResNet), and SPEM's backward needs both indices. Here each
// row is reduced with vector max/min, then the first index of each extreme is found
// with vector compares while the row is still in L1. Semantics follow torch.max(dim) /
// torch.min(dim): NaN propagates (its first index is returned) and ties go to the
// first occurrence.
//
// Input: a contiguous (outer, len, inner) tensor, reduced over len. NCHW maps come in as
// (B*C, H*W, 1) rows, channels_last maps as (B, H*W, C) columns.
// Output: values (outer, 2, inner) in the input dtype and int64 indices, max then min.

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/llvmMathExtras.h>
#include <torch/library.h>

namespace {

using at::vec::Vectorized;

template <typename T>
inline bool beats_max(T v, T best) {
  return v > best || (v != v && best == best);
}

template <typename T>
inline bool beats_min(T v, T best) {
  return v < best || (v != v && best == best);
}

// Lanes of v equal to t (or NaN lanes when t is NaN) as bits; zero_mask() marks lanes that
// are zero, here the lanes where the "differs" compare is false.
template <typename T>
inline uint64_t hits(const Vectorized<T>& v, const Vectorized<T>& t, bool nan) {
  return static_cast<uint64_t>(nan ? (v == v).zero_mask() : (v != t).zero_mask());
}

// First positions of mx and mn in p[0, len), both of which occur there. The row was just
// reduced, so it is in L1: one load serves both searches, and four vectors are tested per
// branch (4 * V <= 64 lanes), so a 64-float row is searched without a data-dependent jump.
template <typename T>
inline void first_indices(const T* p, int64_t len, T mx, T mn, int64_t& imx, int64_t& imn) {
  using Vec = Vectorized<T>;
  constexpr int64_t V = Vec::size();
  static_assert(4 * V <= 64, "four vectors of hit bits must fit in a uint64_t");
  const bool nan = mx != mx;  // then mn is NaN too: both are the first NaN
  const Vec tmx(mx), tmn(mn);
  imx = imn = -1;
  int64_t i = 0;
  for (; i + 4 * V <= len; i += 4 * V) {
    uint64_t hmx = 0, hmn = 0;
    for (int64_t k = 0; k < 4; ++k) {
      const Vec v = Vec::loadu(p + i + k * V);
      hmx |= hits(v, tmx, nan) << (k * V);
      hmn |= hits(v, tmn, nan) << (k * V);
    }
    if (imx < 0 && hmx != 0) imx = i + c10::llvm::countTrailingZeros(hmx);
    if (imn < 0 && hmn != 0) imn = i + c10::llvm::countTrailingZeros(hmn);
    if (imx >= 0 && imn >= 0) return;
  }
  for (; i < len; ++i) {
    const bool at_max = nan ? p[i] != p[i] : p[i] == mx;
    const bool at_min = nan ? p[i] != p[i] : p[i] == mn;
    if (imx < 0 && at_max) imx = i;
    if (imn < 0 && at_min) imn = i;
    if (imx >= 0 && imn >= 0) return;
  }
}

template <typename T>
void reduce_rows_vec(const T* x, T* val, int64_t* idx, int64_t rows, int64_t len) {
  using Vec = Vectorized<T>;
  constexpr int64_t V = Vec::size();
  const auto vmax = [](Vec& a, Vec& b) { return at::vec::maximum(a, b); };
  const auto vmin = [](Vec& a, Vec& b) { return at::vec::minimum(a, b); };
  at::parallel_for(0, rows, std::max<int64_t>(1, 32768 / len), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* p = x + r * len;
      T mx = p[0], mn = p[0];
      int64_t i = 0;
      if (len >= V) {
        Vec vmx = Vec::loadu(p), vmn = vmx;
        i = V;
        if (len >= 4 * V) {
          // four independent accumulators, so the max/min latency does not serialise the loop
          Vec mx1 = Vec::loadu(p + V), mx2 = Vec::loadu(p + 2 * V), mx3 = Vec::loadu(p + 3 * V);
          Vec mn1 = mx1, mn2 = mx2, mn3 = mx3;
          for (i = 4 * V; i + 4 * V <= len; i += 4 * V) {
            const Vec v0 = Vec::loadu(p + i), v1 = Vec::loadu(p + i + V);
            const Vec v2 = Vec::loadu(p + i + 2 * V), v3 = Vec::loadu(p + i + 3 * V);
            vmx = at::vec::maximum(vmx, v0);
            mx1 = at::vec::maximum(mx1, v1);
            mx2 = at::vec::maximum(mx2, v2);
            mx3 = at::vec::maximum(mx3, v3);
            vmn = at::vec::minimum(vmn, v0);
            mn1 = at::vec::minimum(mn1, v1);
            mn2 = at::vec::minimum(mn2, v2);
            mn3 = at::vec::minimum(mn3, v3);
          }
          vmx = at::vec::maximum(at::vec::maximum(vmx, mx1), at::vec::maximum(mx2, mx3));
          vmn = at::vec::minimum(at::vec::minimum(vmn, mn1), at::vec::minimum(mn2, mn3));
        }
        for (; i + V <= len; i += V) {
          const Vec v = Vec::loadu(p + i);
          vmx = at::vec::maximum(vmx, v);
          vmn = at::vec::minimum(vmn, v);
        }
        mx = at::vec::vec_reduce_all<T>(vmax, vmx);
        mn = at::vec::vec_reduce_all<T>(vmin, vmn);
      }
      for (; i < len; ++i) {
        mx = beats_max(p[i], mx) ? p[i] : mx;
        mn = beats_min(p[i], mn) ? p[i] : mn;
      }
      val[2 * r] = mx;
      val[2 * r + 1] = mn;
      first_indices(p, len, mx, mn, idx[2 * r], idx[2 * r + 1]);
    }
  });
}

// Reduced precision (bf16/fp16 under autocast): compare in float, one scalar pass.
template <typename T>
void reduce_rows_scalar(const T* x, T* val, int64_t* idx, int64_t rows, int64_t len) {
  using acc_t = at::opmath_type<T>;
  at::parallel_for(0, rows, std::max<int64_t>(1, 32768 / len), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* p = x + r * len;
      acc_t mx = p[0], mn = p[0];
      int64_t imx = 0, imn = 0;
      for (int64_t i = 1; i < len; ++i) {
        const acc_t v = p[i];
        if (beats_max(v, mx)) {
          mx = v;
          imx = i;
        }
        if (beats_min(v, mn)) {
          mn = v;
          imn = i;
        }
      }
      val[2 * r] = p[imx];
      val[2 * r + 1] = p[imn];
      idx[2 * r] = imx;
      idx[2 * r + 1] = imn;
    }
  });
}

// channels_last: reduce over len with the contiguous inner (channel) axis in the lanes;
// each lane keeps its running extremes and where it saw them.
template <typename T>
inline void reduce_column_scalar(const T* p, T* vo, int64_t* io, int64_t len, int64_t inner) {
  using acc_t = at::opmath_type<T>;
  acc_t mx = p[0], mn = p[0];
  int64_t imx = 0, imn = 0;
  for (int64_t l = 1; l < len; ++l) {
    const acc_t v = p[l * inner];
    if (beats_max(v, mx)) {
      mx = v;
      imx = l;
    }
    if (beats_min(v, mn)) {
      mn = v;
      imn = l;
    }
  }
  vo[0] = p[imx * inner];
  vo[inner] = p[imn * inner];
  io[0] = imx;
  io[inner] = imn;
}

template <typename T>
inline void reduce_columns_vec(const T* p, T* vo, int64_t* io, int64_t len, int64_t inner) {
  using Vec = Vectorized<T>;
  constexpr int64_t V = Vec::size();
  T positions[V];
  Vec vmx = Vec::loadu(p), vmn = vmx, imx(T(0)), imn(T(0));
  for (int64_t l = 1; l < len; ++l) {
    const Vec v = Vec::loadu(p + l * inner);
    const Vec gt = (v > vmx) | ((v != v) & (vmx == vmx));
    const Vec lt = (v < vmn) | ((v != v) & (vmn == vmn));
    const Vec here(static_cast<T>(l));  // exact: max_min() checks len < 2^24 for columns
    vmx = Vec::blendv(vmx, v, gt);
    imx = Vec::blendv(imx, here, gt);
    vmn = Vec::blendv(vmn, v, lt);
    imn = Vec::blendv(imn, here, lt);
  }
  vmx.store(vo);
  vmn.store(vo + inner);
  imx.store(positions);
  for (int64_t k = 0; k < V; ++k) io[k] = static_cast<int64_t>(positions[k]);
  imn.store(positions);
  for (int64_t k = 0; k < V; ++k) io[inner + k] = static_cast<int64_t>(positions[k]);
}

template <typename T>
void reduce_columns(const T* x, T* val, int64_t* idx, int64_t outer, int64_t len, int64_t inner) {
  constexpr bool vectorised = std::is_same_v<T, at::opmath_type<T>>;
  constexpr int64_t V = Vectorized<T>::size();
  at::parallel_for(0, outer, 1, [&](int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o) {
      const T* p = x + o * len * inner;
      T* vo = val + o * 2 * inner;
      int64_t* io = idx + o * 2 * inner;
      int64_t c = 0;
      if constexpr (vectorised) {
        for (; c + V <= inner; c += V) {
          reduce_columns_vec<T>(p + c, vo + c, io + c, len, inner);
        }
      }
      for (; c < inner; ++c) {
        reduce_column_scalar<T>(p + c, vo + c, io + c, len, inner);
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> max_min(const at::Tensor& x) {
  TORCH_CHECK(x.device().is_cpu(), "spe_lightning_cpu::max_min is a CPU kernel, got a tensor on ", x.device());
  TORCH_CHECK(x.dim() == 3 && x.size(1) > 0, "spe_lightning_cpu::max_min expects (outer, len, inner) with len > 0, got ",
              x.sizes());
  TORCH_CHECK(x.size(2) == 1 || x.size(1) < (int64_t{1} << 24),
              "spe_lightning_cpu::max_min counts column positions in float lanes: fewer than 2^24 allowed, got ",
              x.size(1));
  const at::Tensor input = x.contiguous();
  const int64_t outer = input.size(0), len = input.size(1), inner = input.size(2);
  at::Tensor val = at::empty({outer, 2, inner}, input.options());
  at::Tensor idx = at::empty({outer, 2, inner}, input.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, input.scalar_type(), "spe_lightning_cpu::max_min", [&] {
    const scalar_t* in = input.const_data_ptr<scalar_t>();
    if (inner != 1) {
      reduce_columns<scalar_t>(in, val.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(), outer, len, inner);
    } else if constexpr (std::is_same_v<scalar_t, at::opmath_type<scalar_t>>) {
      reduce_rows_vec<scalar_t>(in, val.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(), outer, len);
    } else {
      reduce_rows_scalar<scalar_t>(in, val.data_ptr<scalar_t>(), idx.data_ptr<int64_t>(), outer, len);
    }
  });
  return {val, idx};
}

}  // namespace

TORCH_LIBRARY(spe_lightning_cpu, m) {
  m.def("max_min(Tensor x) -> (Tensor values, Tensor indices)");
}

TORCH_LIBRARY_IMPL(spe_lightning_cpu, CPU, m) {
  m.impl("max_min", &max_min);
}
