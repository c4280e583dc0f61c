//! Limits on what is read from files and streams.
//!
//! Data files and standard input come from strangers as much as model files do. Every read
//! is bounded: a CSV source by its total size, its line length and its field length, an IDX
//! file by the size its header declares (checked before decompressing anything) and the
//! tensor limit of [`nn_core::limits`]. A refusal names the limit and, where it can be
//! raised, how.
//!
//! | limit | default | raise with |
//! | --- | --- | --- |
//! | bytes of a CSV file or of standard input | 2 GiB | `NN_MAX_INPUT_BYTES` |
//! | bytes of one CSV line | 4 MiB | `NN_MAX_LINE_BYTES` |
//! | bytes of one CSV field, class name or feature name | 1024 | — |
//! | decompressed bytes of one IDX file | 2²⁸ (the tensor limit) | — |
//! | values in a data set | 2²⁸ (the tensor limit) | — |

/// The longest CSV field, class name or feature name, in bytes.
pub const MAX_NAME_BYTES: usize = 1024;

/// The most data bytes an IDX file may declare (one byte per value, and every value
/// becomes one element of a tensor).
pub const MAX_IDX_BYTES: usize = nn_core::limits::MAX_TENSOR_ELEMENTS;

/// The bounds on reading a data source.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The most bytes read from one CSV file or from standard input.
    pub input_bytes: u64,
    /// The most bytes on one CSV line (a record).
    pub line_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            input_bytes: 2 << 30,
            line_bytes: 4 << 20,
        }
    }
}

impl Limits {
    /// The defaults, raised (or lowered) by the environment variables `NN_MAX_INPUT_BYTES`
    /// and `NN_MAX_LINE_BYTES` where they hold a number.
    ///
    /// # Errors
    /// A sentence naming a variable that is set but not a positive whole number.
    pub fn from_env() -> Result<Self, String> {
        let mut l = Limits::default();
        if let Some(v) = var("NN_MAX_INPUT_BYTES")? {
            l.input_bytes = v;
        }
        if let Some(v) = var("NN_MAX_LINE_BYTES")? {
            l.line_bytes = usize::try_from(v).unwrap_or(usize::MAX);
        }
        Ok(l)
    }
}

fn var(name: &str) -> Result<Option<u64>, String> {
    match std::env::var(name) {
        Err(_) => Ok(None),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if n > 0 => Ok(Some(n)),
            _ => Err(format!(
                "{name}=`{}`: expected a positive number of bytes",
                nn_core::limits::excerpt(&v)
            )),
        },
    }
}
