//! [`label_enum!`]: an enum whose every variant is a metric label value.
//!
//! Each variant is declared with its label, so a variant cannot exist without
//! one, and `ALL` is built from the same list, so none can be left out of it.
//! Counters keep one atomic per variant in an array of `ALL.len()`, indexed by
//! `index()` (the variant's position, no search), and a scrape exports every
//! label value from start-up, at 0. It lives here, the first module on the
//! packet's path, so that the decoder's error kinds and notification
//! severities use it as well as the counters in `crate::telemetry`.

/// Declares a fieldless enum from `Variant => "label"` pairs, with `ALL` (in
/// declaration order), `as_str()` (the label) and `index()` (the position in
/// `ALL`).
macro_rules! label_enum {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $label:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        $vis enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every variant, in declaration order: `ALL[v.index()] == v`.
            pub const ALL: [$name; [$($label),+].len()] = [$($name::$variant),+];

            /// The label value.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $label),+
                }
            }

            /// The position in `ALL`, which counter arrays are indexed by.
            pub const fn index(self) -> usize {
                self as usize
            }
        }
    };
}

pub(crate) use label_enum;

#[cfg(test)]
mod tests {
    label_enum! {
        enum Example {
            First => "first",
            Second => "second",
            Third => "third",
        }
    }

    #[test]
    fn all_lists_every_variant_at_its_index() {
        assert_eq!(
            Example::ALL,
            [Example::First, Example::Second, Example::Third]
        );
        for (i, v) in Example::ALL.iter().enumerate() {
            assert_eq!(v.index(), i);
        }
    }

    #[test]
    fn each_variant_has_its_label() {
        let labels = Example::ALL.map(Example::as_str);
        assert_eq!(labels, ["first", "second", "third"]);
    }
}
