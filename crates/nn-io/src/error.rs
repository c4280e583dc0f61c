//! The one error type of `nn-io`. Every variant names the file it is about.

use std::path::PathBuf;

/// Errors reading data sets and model files, and saving models.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file holds no header, or a header but no rows.
    #[error("{}: {what}", path.display())]
    Empty {
        /// The file.
        path: PathBuf,
        /// What is missing: `"empty file, expected a header line"`…
        what: &'static str,
    },
    /// The chosen label column is not in the header.
    #[error("{}: no column named `{column}` in the header; columns are: {available}", path.display())]
    UnknownColumn {
        /// The file.
        path: PathBuf,
        /// The requested column.
        column: String,
        /// The header's column names, comma-separated.
        available: String,
    },
    /// Two columns of the header with the same name.
    #[error("{}: columns {first} and {second} are both named `{name}`; column names must be distinct", path.display())]
    DuplicateColumn {
        /// The file.
        path: PathBuf,
        /// The name.
        name: String,
        /// The first column with it, from 1.
        first: usize,
        /// The second, from 1.
        second: usize,
    },
    /// A size beyond one of the [`limits`](crate::limits) (input bytes, line or field
    /// length, IDX size, values in a data set, distinct classes).
    #[error("{}: {message}", path.display())]
    Limit {
        /// The file.
        path: PathBuf,
        /// What is too large, its size and the limit.
        message: String,
    },
    /// A limit of the tensor math (elements per tensor), for data being read.
    #[error(transparent)]
    Core(#[from] nn_core::Error),
    /// A row with another number of fields than the header.
    #[error("{}: line {line}: expected {expected} columns (as in the header), got {got}", path.display())]
    ColumnCount {
        /// The file.
        path: PathBuf,
        /// Line number, from 1 (the header is line 1).
        line: u64,
        /// Columns in the header.
        expected: usize,
        /// Fields on this line.
        got: usize,
    },
    /// A field that does not parse as what its column holds.
    #[error("{}: line {line}, column {column} (`{name}`): expected {expected}, got `{value}`", path.display())]
    BadValue {
        /// The file.
        path: PathBuf,
        /// Line number, from 1.
        line: u64,
        /// Column number, from 1.
        column: usize,
        /// Column name from the header.
        name: String,
        /// What was expected, e.g. `"a number"`.
        expected: &'static str,
        /// The field as found.
        value: String,
    },
    /// A CSV syntax error (unbalanced quotes, invalid UTF-8).
    #[error("{}: line {line}: {message}", path.display())]
    CsvSyntax {
        /// The file.
        path: PathBuf,
        /// Line number, from 1.
        line: u64,
        /// The parser's message.
        message: String,
    },
    /// An IDX file whose header or size is wrong.
    #[error("{}: {message}", path.display())]
    Idx {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the expected and actual values.
        message: String,
    },
    /// Two files (or parts of a data set) that do not agree.
    #[error("{message}")]
    Mismatch {
        /// What disagrees, naming the files and both counts or shapes.
        message: String,
    },
    /// The file is not of the expected kind (wrong magic bytes).
    #[error("{}: not a {expected} file: found {found}", path.display())]
    NotThisFile {
        /// The file.
        path: PathBuf,
        /// `"model"` or `"checkpoint"`.
        expected: &'static str,
        /// What the first bytes are instead.
        found: String,
    },
    /// A format version this build cannot read.
    #[error("{}: format version {found} is not supported; this build reads versions 1 to {supported}", path.display())]
    NewerVersion {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// The declared payload length does not match the file (truncated or extended).
    #[error("{}: {message}", path.display())]
    Length {
        /// The file.
        path: PathBuf,
        /// Declared and actual sizes.
        message: String,
    },
    /// The payload's CRC-32 differs from the one stored: the file is corrupt.
    #[error("{}: checksum mismatch (stored {stored:08x}, computed {computed:08x}): the file is corrupt", path.display())]
    Checksum {
        /// The file.
        path: PathBuf,
        /// CRC-32 in the header.
        stored: u32,
        /// CRC-32 of the payload as read.
        computed: u32,
    },
    /// The payload passed its checksum but does not decode.
    #[error("{}: payload does not decode: {message}", path.display())]
    Decode {
        /// The file.
        path: PathBuf,
        /// The decoder's message.
        message: String,
    },
    /// The architecture in the file cannot be built (e.g. an unregistered layer kind).
    #[error("{}: {source}", path.display())]
    Spec {
        /// The file.
        path: PathBuf,
        /// The layer error, naming the kind or attribute.
        source: Box<nn_layers::Error>,
    },
    /// A stored tensor that is missing, unexpected, or of the wrong shape for the spec.
    #[error("{}: {message}", path.display())]
    Tensor {
        /// The file.
        path: PathBuf,
        /// Which tensor and both shapes.
        message: String,
    },
    /// Saving failed; the previous file at `path`, if any, is untouched.
    #[error("{}: could not save: {source}", path.display())]
    Save {
        /// The target file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// A safetensors file that cannot be imported (malformed, or without the description
    /// it needs).
    #[error("{}: {message}", path.display())]
    Safetensors {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A model that cannot be written in an interchange format.
    #[error("cannot export to {format}: {message}")]
    Export {
        /// The format (`ONNX`).
        format: &'static str,
        /// What stands in the way, naming the layer.
        message: String,
    },
    /// A setting out of range (split fractions, normalisation statistics).
    #[error("invalid {what}: {message}")]
    Config {
        /// The setting.
        what: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// `Result` with [`Error`] as the error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}
