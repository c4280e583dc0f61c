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

    /// Adds an attribute (builder style).
    pub fn with(mut self, key: impl Into<String>, value: Attr) -> Self {
        self.attrs.push((key.into(), value));
        self
    }

    /// The attribute `key`, if present.
    pub fn get(&self, key: &str) -> Option<&Attr> {
        self.attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn error(&self, message: String) -> Error {
        Error::Spec {
            kind: self.kind.clone(),
            message,
        }
    }

    fn require(&self, key: &str) -> Result<&Attr> {
        self.get(key)
            .ok_or_else(|| self.error(format!("missing attribute `{key}`")))
    }

    /// The non-negative integer attribute `key`.
    ///
    /// # Errors
    /// [`Error::Spec`] when it is missing, negative or not an integer.
    pub fn usize(&self, key: &str) -> Result<usize> {
        match self.require(key)? {
            Attr::Int(v) if *v >= 0 => Ok(*v as usize),
            other => Err(self.error(format!(
                "attribute `{key}` must be a non-negative integer, got {other:?}"
            ))),
        }
    }

    /// The real attribute `key` (integers are accepted too).
    ///
    /// # Errors
    /// [`Error::Spec`] when it is missing or not a number.
    pub fn float(&self, key: &str) -> Result<f64> {
        match self.require(key)? {
            Attr::Float(v) => Ok(*v),
            Attr::Int(v) => Ok(*v as f64),
            other => Err(self.error(format!("attribute `{key}` must be a number, got {other:?}"))),
        }
    }

    /// The flag `key`.
    ///
    /// # Errors
    /// [`Error::Spec`] when it is missing or not a flag.
    pub fn bool(&self, key: &str) -> Result<bool> {
        match self.require(key)? {
            Attr::Bool(v) => Ok(*v),
            other => Err(self.error(format!(
                "attribute `{key}` must be true or false, got {other:?}"
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
                "attribute `{key}` must be a list of layers, got {other:?}"
            ))),
        }
    }
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
            "layer spec `dense`: attribute `bias` must be a non-negative integer, got Bool(true)"
        );
    }
}
