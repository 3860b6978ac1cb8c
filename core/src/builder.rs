//! Macros for the builder methods every query and option type repeats.
//! Crate-private: they generate ordinary public methods, so the public API
//! and its docs are the same as if written out by hand.

/// Builder methods that set one field and return `self`:
/// `/// doc` `name(arg: Type) => field = value;`.
macro_rules! setters {
    ($( $(#[$attr:meta])* $name:ident($arg:ident: $ty:ty) => $field:ident = $value:expr; )*) => {
        $(
            $(#[$attr])*
            pub fn $name(mut self, $arg: $ty) -> Self {
                self.$field = $value;
                self
            }
        )*
    };
}

/// For a query struct with `limit` and `cursor` fields: `Default` (the
/// other fields as given, [`crate::DEFAULT_PAGE_LIMIT`], no cursor) and the
/// shared `with_limit` / `with_cursor` builders.
macro_rules! paged_query {
    ($ty:ident { $($field:ident: $value:expr),* $(,)? }) => {
        impl Default for $ty {
            fn default() -> Self {
                $ty {
                    $($field: $value,)*
                    limit: $crate::page::DEFAULT_PAGE_LIMIT,
                    cursor: None,
                }
            }
        }

        impl $ty {
            setters! {
                /// Sets the page size.
                with_limit(limit: usize) => limit = limit;
                /// Continues after a cursor.
                with_cursor(cursor: Option<$crate::page::Cursor>) => cursor = cursor;
            }
        }
    };
}
