//! Layer specs: what a layer *is*, without its weights.
//!
//! A [`LayerSpec`] names a layer kind (`"dense"`, `"relu"`, or a user's own kind) and its
//! attributes (`n_in = 784`, `bias = true`). Model files store specs next to the named
//! tensors, and a registry turns a spec back into a layer; a spec is plain data that any
//! serde format can hold.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One attribute value of a layer spec.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Attr {
    /// An integer (sizes, strides).
    Int(i64),
    /// A real number (rates, slopes).
    Float(f64),
    /// A flag.
    Bool(bool),
    /// A word (an initialiser name, a mode).
    Str(String),
    /// A list of integers (a shape).
    Ints(Vec<i64>),
    /// Nested layers (containers).
    Layers(Vec<LayerSpec>),
}

/// A size (sizes in files are integers; no size the limits allow comes near `i64::MAX`,
/// and a larger one saturates, to be refused when read back).
impl From<usize> for Attr {
    fn from(n: usize) -> Self {
        Attr::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl From<i64> for Attr {
    fn from(n: i64) -> Self {
        Attr::Int(n)
    }
}

impl From<f64> for Attr {
    fn from(x: f64) -> Self {
        Attr::Float(x)
    }
}

/// A rate or slope, stored as the `f64` it converts to exactly.
impl From<f32> for Attr {
    fn from(x: f32) -> Self {
        Attr::Float(x as f64)
    }
}

impl From<bool> for Attr {
    fn from(b: bool) -> Self {
        Attr::Bool(b)
    }
}

impl From<&str> for Attr {
    fn from(s: &str) -> Self {
        Attr::Str(s.to_string())
    }
}

/// The kind and attributes of a layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LayerSpec {
    /// The layer kind, the key of the registry.
    pub kind: String,
    /// Attributes in a fixed order.
    pub attrs: Vec<(String, Attr)>,
}

impl LayerSpec {
    /// A spec of `kind` with no attribute.
    pub fn new(kind: impl Into<String>) -> Self {
        LayerSpec {
            kind: kind.into(),
            attrs: Vec::new(),
        }
    }

    /// Adds an attribute (builder style): an [`Attr`], or a size, number, flag or word
    /// that converts into one.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<Attr>) -> Self {
        self.attrs.push((key.into(), value.into()));
        self
    }

    /// The attribute `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Attr> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn error(&self, message: String) -> Error {
        Error::Spec {
            kind: nn_core::limits::excerpt(&self.kind),
            message,
        }
    }

    fn require(&self, key: &str) -> Result<&Attr> {
        self.get(key)
            .ok_or_else(|| self.error(format!("missing attribute `{key}`")))
    }

    /// Refuses attributes other than `known` (a misspelt `n_ot` is an error, not a default)
    /// and attributes given twice.
    ///
    /// # Errors
    /// [`Error::Spec`] naming the attribute and the known ones.
    pub fn only(&self, known: &[&str]) -> Result<()> {
        for (i, (k, _)) in self.attrs.iter().enumerate() {
            if !known.contains(&k.as_str()) {
                let expected = if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                };
                return Err(self.error(format!(
                    "unknown attribute `{}` (expected: {expected})",
                    nn_core::limits::excerpt(k)
                )));
            }
            if self.attrs[..i].iter().any(|(other, _)| other == k) {
                return Err(self.error(format!("attribute `{k}` is given twice")));
            }
        }
        Ok(())
    }

    /// The non-negative integer attribute `key`.
    ///
    /// # Errors
    /// [`Error::Spec`] when it is missing, negative or not an integer.
    pub fn usize(&self, key: &str) -> Result<usize> {
        let v = self.require(key)?;
        self.as_usize(key, v)
    }

    fn as_usize(&self, key: &str, v: &Attr) -> Result<usize> {
        match v {
            Attr::Int(i) => usize::try_from(*i).map_err(|_| {
                self.error(format!(
                    "attribute `{key}` must be a non-negative integer, got {i}"
                ))
            }),
            other => Err(self.error(format!(
                "attribute `{key}` must be a non-negative integer, got {}",
                describe(other)
            ))),
        }
    }

    /// The non-negative integer attribute `key`, or `default` when it is absent.
    ///
    /// # Errors
    /// As [`LayerSpec::usize`] for a present attribute.
    pub fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        match self.get(key) {
            Some(v) => self.as_usize(key, v),
            None => Ok(default),
        }
    }

    /// The non-negative integer attribute `key`, or the `inferred` value when it is absent;
    /// an error naming `key` when it is absent and nothing could be inferred.
    ///
    /// # Errors
    /// As [`LayerSpec::usize`].
    pub fn usize_or_inferred(&self, key: &str, inferred: Option<usize>) -> Result<usize> {
        match (self.get(key), inferred) {
            (Some(v), _) => self.as_usize(key, v),
            (None, Some(i)) => Ok(i),
            (None, None) => Err(self.error(format!(
                "missing attribute `{key}` (and no input shape to infer it from)"
            ))),
        }
    }

    /// A pair of non-negative integers `key` (`[a, b]`, or one integer for both), or
    /// `default` when it is absent.
    ///
    /// # Errors
    /// [`Error::Spec`] for anything else.
    pub fn pair_or(&self, key: &str, default: (usize, usize)) -> Result<(usize, usize)> {
        let bad = |got: String| {
            self.error(format!(
                "attribute `{key}` must be a non-negative integer or a pair of them, got {got}"
            ))
        };
        match self.get(key) {
            None => Ok(default),
            Some(Attr::Int(i)) => {
                let v = usize::try_from(*i).map_err(|_| bad(i.to_string()))?;
                Ok((v, v))
            }
            Some(Attr::Ints(v)) if v.len() == 2 => {
                let a = usize::try_from(v[0]).map_err(|_| bad(format!("{v:?}")))?;
                let b = usize::try_from(v[1]).map_err(|_| bad(format!("{v:?}")))?;
                Ok((a, b))
            }
            Some(other) => Err(bad(describe(other))),
        }
    }

    /// The real attribute `key` (integers are accepted too); it must be finite.
    ///
    /// # Errors
    /// [`Error::Spec`] when it is missing, not a number or not finite.
    pub fn float(&self, key: &str) -> Result<f64> {
        let v = self.require(key)?;
        self.as_float(key, v)
    }

    fn as_float(&self, key: &str, v: &Attr) -> Result<f64> {
        match v {
            Attr::Float(f) if f.is_finite() => Ok(*f),
            Attr::Int(i) => Ok(*i as f64),
            other => Err(self.error(format!(
                "attribute `{key}` must be a finite number, got {}",
                describe(other)
            ))),
        }
    }

    /// The real attribute `key`, or `default` when it is absent.
    ///
    /// # Errors
    /// As [`LayerSpec::float`] for a present attribute.
    pub fn float_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            Some(v) => self.as_float(key, v),
            None => Ok(default),
        }
    }

    /// The flag `key`.
    ///
    /// # Errors
    /// [`Error::Spec`] when it is missing or not a flag.
    pub fn bool(&self, key: &str) -> Result<bool> {
        let v = self.require(key)?;
        self.as_bool(key, v)
    }

    fn as_bool(&self, key: &str, v: &Attr) -> Result<bool> {
        match v {
            Attr::Bool(b) => Ok(*b),
            other => Err(self.error(format!(
                "attribute `{key}` must be true or false, got {}",
                describe(other)
            ))),
        }
    }

    /// The flag `key`, or `default` when it is absent.
    ///
    /// # Errors
    /// As [`LayerSpec::bool`] for a present attribute.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            Some(v) => self.as_bool(key, v),
            None => Ok(default),
        }
    }

    /// The word `key`, if present.
    ///
    /// # Errors
    /// [`Error::Spec`] when it is present but not a word.
    pub fn str_opt(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Attr::Str(s)) => Ok(Some(s)),
            Some(other) => Err(self.error(format!(
                "attribute `{key}` must be a word, got {}",
                describe(other)
            ))),
        }
    }

    /// The nested layer specs `key`.
    ///
    /// # Errors
    /// [`Error::Spec`] when it is missing or not a list of layers.
    pub fn layers(&self, key: &str) -> Result<&[LayerSpec]> {
        match self.require(key)? {
            Attr::Layers(v) => Ok(v),
            other => Err(self.error(format!(
                "attribute `{key}` must be a list of layers, got {}",
                describe(other)
            ))),
        }
    }

    /// An error about this spec (for constructors that check more than types).
    pub fn invalid(&self, message: impl Into<String>) -> Error {
        self.error(message.into())
    }
}

/// An attribute value for a message, cut to a readable length.
fn describe(a: &Attr) -> String {
    let text = match a {
        Attr::Int(i) => format!("the integer {i}"),
        Attr::Float(f) => format!("the number {f}"),
        Attr::Bool(b) => format!("the flag {b}"),
        Attr::Str(s) => format!("the word `{s}`"),
        Attr::Ints(v) => format!("the list {v:?}"),
        Attr::Layers(v) => format!("a list of {} layers", v.len()),
    };
    nn_core::limits::excerpt(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_getters_and_their_errors() {
        let s = LayerSpec::new("dense")
            .with("n_in", Attr::Int(5))
            .with("bias", Attr::Bool(true))
            .with("alpha", Attr::Int(2));
        assert_eq!(s.usize("n_in").unwrap(), 5);
        assert!(s.bool("bias").unwrap());
        assert_eq!(s.float("alpha").unwrap(), 2.0);
        assert_eq!(
            s.usize("n_out").unwrap_err().to_string(),
            "layer spec `dense`: missing attribute `n_out`"
        );
        assert_eq!(
            s.usize("bias").unwrap_err().to_string(),
            "layer spec `dense`: attribute `bias` must be a non-negative integer, got the flag true"
        );
        assert_eq!(s.usize_or("n_out", 7).unwrap(), 7);
        assert_eq!(s.usize_or_inferred("n_out", Some(3)).unwrap(), 3);
        assert!(s.usize_or_inferred("n_out", None).is_err());
        s.only(&["n_in", "bias", "alpha"]).unwrap();
        assert_eq!(
            s.only(&["n_in", "bias"]).unwrap_err().to_string(),
            "layer spec `dense`: unknown attribute `alpha` (expected: n_in, bias)"
        );
        let neg = LayerSpec::new("dense").with("n_in", Attr::Int(-3));
        assert!(
            neg.usize("n_in")
                .unwrap_err()
                .to_string()
                .contains("got -3")
        );
        let nan = LayerSpec::new("dropout").with("p", Attr::Float(f64::NAN));
        assert!(nan.float("p").is_err());
        let pad = LayerSpec::new("conv2d").with("padding", Attr::Ints(vec![1, 2]));
        assert_eq!(pad.pair_or("padding", (0, 0)).unwrap(), (1, 2));
        assert_eq!(pad.pair_or("stride", (1, 1)).unwrap(), (1, 1));
        let twice = LayerSpec::new("relu")
            .with("a", Attr::Int(1))
            .with("a", Attr::Int(2));
        assert!(
            twice
                .only(&["a"])
                .unwrap_err()
                .to_string()
                .contains("given twice")
        );
    }

    #[test]
    fn flags_pairs_and_converted_values() {
        let s = LayerSpec::new("x")
            .with("on", true)
            .with("off", false)
            .with("three", Attr::Ints(vec![3, 3, 3]))
            .with("n", 5usize)
            .with("r", 0.5f32)
            .with("i", -2i64)
            .with("w", "he_uniform");
        assert!(s.bool("on").unwrap());
        assert!(!s.bool("off").unwrap());
        assert!(s.bool("n").is_err() && s.bool("missing").is_err());
        assert!(!s.bool_or("missing", false).unwrap());
        let e = s.pair_or("three", (1, 1)).unwrap_err().to_string();
        assert!(
            e.contains("a non-negative integer or a pair of them"),
            "{e}"
        );
        assert_eq!(s.pair_or("n", (1, 1)).unwrap(), (5, 5));
        assert_eq!(
            s.attrs[3..]
                .iter()
                .map(|(_, v)| v.clone())
                .collect::<Vec<_>>(),
            [
                Attr::Int(5),
                Attr::Float(0.5),
                Attr::Int(-2),
                Attr::Str("he_uniform".into())
            ]
        );
        assert_eq!(s.str_opt("w").unwrap(), Some("he_uniform"));
    }
}
