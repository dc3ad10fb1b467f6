//! Typed addresses and identifiers.
//!
//! Guest-physical addresses ([`Gpa`]), guest-virtual addresses ([`Gva`]), guest frame numbers
//! ([`Gfn`]) and the ids of vCPUs, altp2m views and domains are distinct types so that a
//! physical address can never be passed where a virtual one is expected. They deliberately have
//! no arithmetic operators: use [`Gpa::checked_add`] and friends, which return `None` on
//! overflow instead of wrapping silently (guest data decides many of these values).

use std::fmt;

/// Size of a base page on x86-64.
pub const PAGE_SIZE: u64 = 4096;
/// `log2(PAGE_SIZE)`.
pub const PAGE_SHIFT: u32 = 12;

macro_rules! address_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        #[repr(transparent)]
        pub struct $name(pub u64);

        impl $name {
            /// The raw 64-bit value.
            #[inline]
            pub const fn raw(self) -> u64 {
                self.0
            }

            /// `self + off`, or `None` if that overflows 64 bits.
            #[inline]
            pub const fn checked_add(self, off: u64) -> Option<Self> {
                match self.0.checked_add(off) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// `self - off`, or `None` if that underflows.
            #[inline]
            pub const fn checked_sub(self, off: u64) -> Option<Self> {
                match self.0.checked_sub(off) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// `self + off` modulo 2^64 (for address-space arithmetic that is defined to wrap,
            /// such as the kernel's `__pa_symbol`).
            #[inline]
            pub const fn wrapping_add(self, off: u64) -> Self {
                Self(self.0.wrapping_add(off))
            }

            /// Offset of this address inside its 4 KiB page.
            #[inline]
            pub const fn page_offset(self) -> u64 {
                self.0 & (PAGE_SIZE - 1)
            }

            /// This address rounded down to its 4 KiB page.
            #[inline]
            pub const fn page_base(self) -> Self {
                Self(self.0 & !(PAGE_SIZE - 1))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }

        impl fmt::LowerHex for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::LowerHex::fmt(&self.0, f)
            }
        }

        impl From<$name> for u64 {
            fn from(a: $name) -> u64 {
                a.0
            }
        }
    };
}

address_type!(
    /// A guest-physical address (what the guest's page tables produce; a Xen "gfn" byte address).
    Gpa
);
address_type!(
    /// A guest-virtual (linear) address, interpreted through some page-table root.
    Gva
);

impl Gpa {
    /// The frame that contains this address.
    #[inline]
    pub const fn gfn(self) -> Gfn {
        Gfn(self.0 >> PAGE_SHIFT)
    }
}

impl Gva {
    /// Whether the address is canonical for the given number of virtual-address bits
    /// (48 for 4-level paging, 57 for 5-level): bits above `bits-1` equal bit `bits-1`.
    #[inline]
    pub const fn is_canonical(self, bits: u32) -> bool {
        let shift = 64 - bits;
        (((self.0 << shift) as i64) >> shift) as u64 == self.0
    }
}

/// A guest frame number: a guest-physical address divided by [`PAGE_SIZE`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(transparent)]
pub struct Gfn(pub u64);

impl Gfn {
    /// The raw frame number.
    #[inline]
    pub const fn raw(self) -> u64 {
        self.0
    }

    /// The first byte of the frame, or `None` if the frame number is too large to shift.
    #[inline]
    pub const fn gpa(self) -> Option<Gpa> {
        if self.0 > (u64::MAX >> PAGE_SHIFT) {
            None
        } else {
            Some(Gpa(self.0 << PAGE_SHIFT))
        }
    }

    /// `self + n`, or `None` on overflow.
    #[inline]
    pub const fn checked_add(self, n: u64) -> Option<Self> {
        match self.0.checked_add(n) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }
}

impl fmt::Debug for Gfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Gfn({:#x})", self.0)
    }
}

impl fmt::Display for Gfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}", self.0)
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $inner:ty) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
        #[repr(transparent)]
        pub struct $name(pub $inner);

        impl $name {
            /// The raw value.
            #[inline]
            pub const fn raw(self) -> $inner {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

id_type!(
    /// A virtual CPU index inside a domain (Xen's `vcpu_id`).
    VcpuId,
    u32
);
id_type!(
    /// An altp2m view index. View 0 is the host p2m and always exists.
    ViewId,
    u16
);
id_type!(
    /// A Xen domain id.
    DomId,
    u16
);

impl ViewId {
    /// The host p2m (view 0), which every vCPU uses unless switched.
    pub const HOST: ViewId = ViewId(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_arithmetic_refuses_overflow() {
        assert_eq!(Gpa(u64::MAX).checked_add(1), None);
        assert_eq!(Gpa(0).checked_sub(1), None);
        assert_eq!(Gva(0x1000).checked_add(0x10), Some(Gva(0x1010)));
        assert_eq!(Gfn(u64::MAX).gpa(), None);
        assert_eq!(Gfn(0x10).gpa(), Some(Gpa(0x10000)));
        assert_eq!(Gpa(0x12345).gfn(), Gfn(0x12));
        assert_eq!(Gpa(0x12345).page_offset(), 0x345);
        assert_eq!(Gpa(0x12345).page_base(), Gpa(0x12000));
    }

    #[test]
    fn canonical_addresses() {
        assert!(Gva(0xffff_8000_0000_0000).is_canonical(48));
        assert!(!Gva(0x0000_8000_0000_0000).is_canonical(48));
        assert!(Gva(0x0000_8000_0000_0000).is_canonical(57));
        assert!(Gva(0xff11_0000_0000_0000).is_canonical(57));
        assert!(!Gva(0xff11_0000_0000_0000).is_canonical(48));
    }

    #[test]
    fn display_is_hex() {
        assert_eq!(Gpa(0xae00000).to_string(), "0xae00000");
        assert_eq!(format!("{:?}", Gva(0x10)), "Gva(0x10)");
    }
}
