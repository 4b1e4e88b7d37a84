//! [`vocab!`]: one declaration per small integer vocabulary (command class, driver,
//! verdict, ...) that crosses the kernel/user boundary. It defines, in a module of that
//! name:
//! - the ids as plain `pub const`s, so they work in `match` patterns and in the eBPF
//!   programs;
//! - `ALL`, every id in declaration order;
//! - `label(id)`, the id's stable text label (metrics, audit log, policy files), with
//!   `unknown` (or the vocabulary's own fallback) for any other value: a `match`, no loop;
//! - `from_label(text)`, the inverse: a search over `ALL`, so userspace only;
//! - a unit test that every id round-trips through both and that ids and labels are
//!   unique within the vocabulary.
//!
//! What a vocabulary does beyond naming its ids (`scope::from_raw`, `result::from_ret`,
//! `channel::of`) is written as ordinary items after the id list, inside the same
//! invocation, so it lands in the same module.
//!
//! Not for: bit sets (`model::event_flag`, `effects::effect`) or ids whose names live
//! elsewhere (`model::ioctl`, named by the `abi` table).

/// See the [module documentation](self). Shape:
///
/// ```text
/// vocab! {
///     /// Module doc.
///     pub mod verdict: u8 {
///         /// Id doc.
///         ALLOW = 0 => "allow",
///         DENY = 2 => "deny",
///     }
///     // optional: more items of the module
/// }
/// ```
///
/// `pub mod scope: u8, otherwise "invalid" { ... }` changes the label of values that are
/// not ids from `unknown`.
macro_rules! vocab {
    (
        $(#[$doc:meta])*
        $vis:vis mod $name:ident: $ty:ty $(, otherwise $fallback:literal)? {
            $(
                $(#[$id_doc:meta])*
                $id:ident = $value:expr => $label:literal
            ),+ $(,)?
        }
        $($extra:item)*
    ) => {
        $(#[$doc])*
        $vis mod $name {
            $(
                $(#[$id_doc])*
                pub const $id: $ty = $value;
            )+

            /// Every id of this vocabulary, in declaration order.
            pub const ALL: [$ty; [$(stringify!($id)),+].len()] = [$($id),+];

            /// The id's stable text label; the vocabulary's fallback label (`unknown`
            /// unless it says otherwise) for any other value.
            pub const fn label(id: $ty) -> &'static str {
                match id {
                    $($id => $label,)+
                    _ => $crate::vocab::vocab!(@fallback $($fallback)?),
                }
            }

            /// The id whose label is exactly `label`. Userspace only: it searches `ALL`.
            pub fn from_label(label: &str) -> Option<$ty> {
                ALL.into_iter().find(|id| self::label(*id) == label)
            }

            $($extra)*

            #[cfg(test)]
            #[test]
            fn ids_round_trip_through_unique_labels() {
                $crate::vocab::check_vocabulary(&ALL, label, from_label);
            }
        }
    };
    (@fallback) => {
        "unknown"
    };
    (@fallback $fallback:literal) => {
        $fallback
    };
}
pub(crate) use vocab;

/// The test every [`vocab!`] module runs on itself.
#[cfg(test)]
pub(crate) fn check_vocabulary<T: Copy + PartialEq + core::fmt::Debug>(
    all: &[T],
    label: fn(T) -> &'static str,
    from_label: fn(&str) -> Option<T>,
) {
    assert!(!all.is_empty());
    for (i, id) in all.iter().enumerate() {
        assert!(!label(*id).is_empty(), "{id:?} has an empty label");
        assert_eq!(from_label(label(*id)), Some(*id), "{id:?} ({}) does not round-trip", label(*id));
        for other in &all[i + 1..] {
            assert_ne!(id, other, "id {id:?} twice");
            assert_ne!(label(*id), label(*other), "label {} twice", label(*id));
        }
    }
}

#[cfg(test)]
mod tests {
    vocab! {
        /// A vocabulary with the default fallback.
        pub mod plain: u8 {
            /// Documented id.
            ONE = 1 => "one",
            TWO = 2 => "two",
        }
        /// An extra item lands in the module.
        pub const fn double(id: u8) -> u8 {
            id * 2
        }
    }

    vocab! {
        pub mod wide: u32, otherwise "other" {
            ZERO = 0 => "zero",
            BIG = 0x1_0000 => "big",
        }
    }

    #[test]
    fn the_macro_defines_consts_all_labels_and_extras() {
        assert_eq!(plain::ALL, [plain::ONE, plain::TWO]);
        assert_eq!(plain::label(plain::TWO), "two");
        assert_eq!(plain::label(7), "unknown");
        assert_eq!(plain::from_label("one"), Some(1));
        assert_eq!(plain::from_label("unknown"), None);
        assert_eq!(plain::from_label("ONE"), None, "labels match exactly");
        assert_eq!(plain::double(plain::TWO), 4);
        // The ids are plain consts: usable as patterns.
        let matched = match 2u8 {
            plain::ONE => 1,
            plain::TWO => 2,
            _ => 0,
        };
        assert_eq!(matched, 2);
    }

    #[test]
    fn a_vocabulary_may_name_its_own_fallback() {
        assert_eq!(wide::label(wide::BIG), "big");
        assert_eq!(wide::label(5), "other");
        assert_eq!(wide::from_label("other"), None);
        assert_eq!(wide::ALL.len(), 2);
    }

    #[test]
    #[should_panic(expected = "label x twice")]
    fn the_check_catches_a_repeated_label() {
        fn label(id: u8) -> &'static str {
            if id == 0 {
                "y"
            } else {
                "x"
            }
        }
        fn from_label(label: &str) -> Option<u8> {
            match label {
                "y" => Some(0),
                "x" => Some(1),
                _ => None,
            }
        }
        super::check_vocabulary(&[0, 1, 2], label, from_label);
    }
}
