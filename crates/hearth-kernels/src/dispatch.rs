//! Run-time ISA selection, done once: the best instruction set the CPU reports, capped by
//! the `HEARTH_ISA` environment variable (`scalar`, `neon`, `avx2`, `avx512`) so tests and users
//! can force a lower path. Never decided at build time: one binary runs on any x86-64.

use std::sync::OnceLock;

/// Instruction-set levels the kernels are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Isa {
    Scalar,
    /// NEON (aarch64's base SIMD).
    Neon,
    /// AVX2 + FMA + F16C.
    Avx2,
    /// AVX-512 F/BW/VL/VNNI on top of AVX2.
    Avx512,
}

impl Isa {
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Neon => "neon",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    fn parse(s: &str) -> Option<Isa> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" | "none" => Some(Isa::Scalar),
            "neon" => Some(Isa::Neon),
            "avx2" => Some(Isa::Avx2),
            "avx512" => Some(Isa::Avx512),
            _ => None,
        }
    }

    /// The best level this CPU supports.
    pub fn detect() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
                && is_x86_feature_detected!("f16c");
            let avx512 = avx2
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx512vnni");
            if avx512 {
                return Isa::Avx512;
            }
            if avx2 {
                return Isa::Avx2;
            }
        }
        #[cfg(target_arch = "aarch64")]
        return Isa::Neon;
        #[allow(unreachable_code)]
        Isa::Scalar
    }
}

/// The ISA every kernel uses in this process.
pub fn isa() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let best = Isa::detect();
        match std::env::var("HEARTH_ISA")
            .ok()
            .as_deref()
            .and_then(Isa::parse)
        {
            // NEON and the x86 levels are not steps of one ladder: NEON forced on x86
            // is the scalar path.
            Some(Isa::Neon) if best != Isa::Neon => Isa::Scalar,
            Some(forced) => forced.min(best),
            None => best,
        }
    })
}

/// Runs `f` compiled for the process's ISA. `f` must be `#[inline(always)]`-friendly: the
/// closure body and everything it inlines (the `#[inline]` block kernels) is compiled once
/// per ISA level, so the scalar reference code is also the vectorized code.
#[inline(always)]
pub fn with_isa<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma,f16c")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
        unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        match isa() {
            // SAFETY: `isa()` only returns a level whose features the CPU reported.
            Isa::Avx512 => return unsafe { avx512(f) },
            // SAFETY: as above.
            Isa::Avx2 => return unsafe { avx2(f) },
            Isa::Scalar | Isa::Neon => {}
        }
    }
    f()
}
