//! CSV data sets: a header line, numeric feature columns and one label column, every
//! column chosen by name.
//!
//! Class labels may be words (`setosa`) or numbers (`7`); they are mapped to indices in
//! sorted order (numerically when every label is an integer), and their names are kept so
//! that predictions can be printed as the original labels. Every problem is reported with
//! the file, the line (the header is line 1) and, for a bad field, the column.
//!
//! Columns are matched by name, never by position: a model's feature columns are looked up
//! in the header whatever their order, a missing one is an error naming it, a header with
//! two columns of the same name is an error, and columns nobody asked for are skipped (and
//! listed in [`Dataset::ignored_columns`] so that a command can say so).
//!
//! The file is read as a stream with the bounds of [`Limits`]: total bytes, bytes per line,
//! bytes per field, and values per data set; rows are parsed straight into the feature
//! matrix, so memory grows with the values read, not with the text.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use ndarray::IxDyn;
use nn_core::{Tensor, limits};

use crate::dataset::{Dataset, Targets};
use crate::error::{Error, Result, io};
use crate::limits::{Limits, MAX_NAME_BYTES};

mod bounded;

pub use bounded::Bounded;

/// What the label column holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum LabelKind {
    /// Class labels (words or integers), mapped to indices.
    #[default]
    Classes,
    /// Real numbers (regression targets).
    Values,
}

/// How to read a CSV data set.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct CsvOptions {
    /// Name of the label column.
    pub label: String,
    /// What the label column holds.
    pub kind: LabelKind,
    /// Class names to map labels to (e.g. those a model was trained with); labels outside
    /// the list are errors. When `None`, the names are taken from the file.
    pub class_names: Option<Vec<String>>,
    /// The feature columns to read, by name and in this order (e.g. those a model was
    /// trained on); other columns are skipped. When `None`, every column but the label.
    pub features: Option<Vec<String>>,
    /// Bounds on the reading.
    pub limits: Limits,
}

impl CsvOptions {
    /// Class labels in column `label`.
    pub fn classes(label: impl Into<String>) -> Self {
        CsvOptions {
            label: label.into(),
            ..Default::default()
        }
    }
}

/// Reads a CSV file into a data set.
///
/// # Errors
/// [`Error::Io`], [`Error::Empty`], [`Error::UnknownColumn`], [`Error::DuplicateColumn`],
/// [`Error::ColumnCount`], [`Error::BadValue`], [`Error::CsvSyntax`] or [`Error::Limit`],
/// each naming the file and, where there is one, the line.
///
/// # Example
///
/// ```
/// use nn_io::{CsvOptions, read_csv};
///
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("people.csv");
/// std::fs::write(&path, "height,weight,sex\n180,80,M\n165,55,F\n170,65,F\n")?;
/// let data = read_csv(&path, &CsvOptions::classes("sex"))?;
/// assert_eq!(data.x.shape(), &[3, 2]);
/// assert_eq!(data.feature_names, ["height", "weight"]);
/// assert_eq!(data.num_classes(), Some(2));
///
/// // a bad value is refused with the file, line and column
/// std::fs::write(&path, "height,weight,sex\n180,80,M\n165,heavy,F\n")?;
/// let err = read_csv(&path, &CsvOptions::classes("sex")).unwrap_err().to_string();
/// assert!(err.contains("people.csv") && err.contains("line 3") && err.contains("weight"), "{err}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_csv(path: &Path, opts: &CsvOptions) -> Result<Dataset> {
    parse_csv(open(path, &opts.limits)?, path, opts)
}

/// Reads feature columns only (no label), e.g. rows to predict; `columns` selects and orders
/// them by name when given (other columns, such as a label, are skipped). Returns the
/// values, the names of the columns read and the names of those skipped.
///
/// # Errors
/// As [`read_csv`].
pub fn read_csv_features(
    path: &Path,
    columns: Option<&[String]>,
    limits: &Limits,
) -> Result<(Tensor, Vec<String>, Vec<String>)> {
    parse_csv_features(open(path, limits)?, path, columns, limits)
}

/// Opens a file, refusing one larger than the input limit before reading it.
fn open(path: &Path, limits: &Limits) -> Result<std::fs::File> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    let meta = file.metadata().map_err(io(path))?;
    if meta.is_dir() {
        return Err(Error::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other("is a folder, not a CSV file"),
        });
    }
    if meta.is_file() && meta.len() > limits.input_bytes {
        return Err(bounded::too_large(path, meta.len(), limits.input_bytes));
    }
    Ok(file)
}

/// Reads a data set from any reader; `path` names the source in messages.
///
/// # Errors
/// As [`read_csv`].
pub fn parse_csv(reader: impl Read, path: &Path, opts: &CsvOptions) -> Result<Dataset> {
    let mut table = Table::start(reader, path, &opts.limits)?;
    let label = table.column(&opts.label)?;
    let features = table.features(opts.features.as_deref(), Some(label))?;
    let mut labels = Labels::new(opts, table.header[label].clone());
    let mut x = Vec::new();
    let mut rows = 0usize;
    while let Some(line) = table.next_record()? {
        table.parse_row(line, &features, rows, &mut x)?;
        labels.push(&table, line, label)?;
        rows += 1;
    }
    table.require_rows(rows)?;
    let feature_names = features.iter().map(|&c| table.header[c].clone()).collect();
    let ignored = table.ignored(&features, Some(label));
    let (targets, class_names) = labels.finish(rows, path)?;
    let x = Tensor::from_shape_vec(IxDyn(&[rows, features.len()]), x).expect("one value per cell");
    let mut d = Dataset::new(x, targets)?;
    d.class_names = class_names;
    d.feature_names = feature_names;
    d.ignored_columns = ignored;
    Ok(d)
}

/// As [`read_csv_features`], from any reader; `path` names the source in messages.
///
/// # Errors
/// As [`read_csv_features`].
pub fn parse_csv_features(
    reader: impl Read,
    path: &Path,
    columns: Option<&[String]>,
    limits: &Limits,
) -> Result<(Tensor, Vec<String>, Vec<String>)> {
    let mut table = Table::start(reader, path, limits)?;
    let cols = table.features(columns, None)?;
    let mut x = Vec::new();
    let mut rows = 0usize;
    while let Some(line) = table.next_record()? {
        table.parse_row(line, &cols, rows, &mut x)?;
        rows += 1;
    }
    table.require_rows(rows)?;
    let names = cols.iter().map(|&c| table.header[c].clone()).collect();
    let ignored = table.ignored(&cols, None);
    let x = Tensor::from_shape_vec(IxDyn(&[rows, cols.len()]), x).expect("one value per cell");
    Ok((x, names, ignored))
}

/// A CSV source being read: its header and a reused record.
struct Table<'p, R: Read> {
    reader: csv::Reader<Bounded<R>>,
    record: csv::StringRecord,
    header: Vec<String>,
    path: &'p Path,
}

impl<'p, R: Read> Table<'p, R> {
    /// Reads and checks the header: present, names within the field limit, no name twice.
    fn start(reader: R, path: &'p Path, limits: &Limits) -> Result<Self> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(Bounded::new(reader, limits));
        let header: Vec<String> = reader
            .headers()
            .map_err(|e| syntax(path, e))?
            .iter()
            .map(str::to_string)
            .collect();
        if header.is_empty() || header.iter().all(String::is_empty) {
            return Err(Error::Empty {
                path: path.to_path_buf(),
                what: "empty file, expected a header line with column names",
            });
        }
        let t = Table {
            reader,
            record: csv::StringRecord::new(),
            header,
            path,
        };
        t.check_header()?;
        Ok(t)
    }

    fn check_header(&self) -> Result<()> {
        let mut seen: HashMap<&str, usize> = HashMap::with_capacity(self.header.len());
        for (c, name) in self.header.iter().enumerate() {
            check_field(self.path, 1, c, name, name)?;
            if let Some(first) = seen.insert(name.as_str(), c) {
                return Err(Error::DuplicateColumn {
                    path: self.path.to_path_buf(),
                    name: limits::excerpt(name),
                    first: first + 1,
                    second: c + 1,
                });
            }
        }
        Ok(())
    }

    /// The index of the column called `name`.
    fn column(&self, name: &str) -> Result<usize> {
        self.header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| Error::UnknownColumn {
                path: self.path.to_path_buf(),
                column: limits::excerpt(name),
                available: column_list(&self.header),
            })
    }

    /// The feature columns: the `wanted` ones by name, or every column but `label`.
    fn features(&self, wanted: Option<&[String]>, label: Option<usize>) -> Result<Vec<usize>> {
        match wanted {
            Some(names) => names.iter().map(|n| self.column(n)).collect(),
            None => Ok((0..self.header.len())
                .filter(|&c| Some(c) != label)
                .collect()),
        }
    }

    /// The header's names that are neither features nor the label.
    fn ignored(&self, features: &[usize], label: Option<usize>) -> Vec<String> {
        (0..self.header.len())
            .filter(|c| !features.contains(c) && Some(*c) != label)
            .map(|c| self.header[c].clone())
            .collect()
    }

    /// Reads the next record into `self.record`; returns its line number.
    fn next_record(&mut self) -> Result<Option<u64>> {
        let more = self
            .reader
            .read_record(&mut self.record)
            .map_err(|e| syntax(self.path, e))?;
        if !more {
            return Ok(None);
        }
        let line = self.record.position().map_or(0, csv::Position::line);
        if self.record.len() != self.header.len() {
            return Err(Error::ColumnCount {
                path: self.path.to_path_buf(),
                line,
                expected: self.header.len(),
                got: self.record.len(),
            });
        }
        Ok(Some(line))
    }

    /// Appends the row's `cols` to `x`, after checking that row `row` keeps the data set
    /// within the tensor limit.
    fn parse_row(&self, line: u64, cols: &[usize], row: usize, x: &mut Vec<f32>) -> Result<()> {
        limits::elements(
            || format!("{}: data", self.path.display()),
            &[row + 1, cols.len()],
        )?;
        for &c in cols {
            x.push(self.number(line, c)?);
        }
        Ok(())
    }

    /// Field `c` of the current record as a finite number.
    fn number(&self, line: u64, c: usize) -> Result<f32> {
        let field = &self.record[c];
        match field.parse::<f32>() {
            Ok(v) if v.is_finite() => Ok(v),
            _ => Err(self.bad_value(line, c, "a finite number")),
        }
    }

    fn bad_value(&self, line: u64, c: usize, expected: &'static str) -> Error {
        Error::BadValue {
            path: self.path.to_path_buf(),
            line,
            column: c + 1,
            name: limits::excerpt(&self.header[c]),
            expected,
            value: limits::excerpt(&self.record[c]),
        }
    }

    fn require_rows(&self, rows: usize) -> Result<()> {
        if rows == 0 {
            return Err(Error::Empty {
                path: self.path.to_path_buf(),
                what: "the header is followed by no data rows",
            });
        }
        Ok(())
    }
}

/// A field within the length limit.
fn check_field(path: &Path, line: u64, c: usize, name: &str, field: &str) -> Result<()> {
    if field.len() > MAX_NAME_BYTES {
        return Err(Error::Limit {
            path: path.to_path_buf(),
            message: format!(
                "line {line}, column {} (`{}`): a field of {} bytes is more than the limit of {MAX_NAME_BYTES}",
                c + 1,
                limits::excerpt(name),
                field.len()
            ),
        });
    }
    Ok(())
}

/// The label column's values as they are read: class ids in order of first appearance (or
/// indices into known names), or numbers.
struct Labels {
    kind: LabelKind,
    known: Option<Vec<String>>,
    column: String,
    /// Distinct labels seen, with their id in order of first appearance.
    seen: HashMap<String, usize>,
    ids: Vec<usize>,
    values: Vec<f32>,
}

impl Labels {
    fn new(opts: &CsvOptions, column: String) -> Self {
        Labels {
            kind: opts.kind,
            known: opts.class_names.clone(),
            column,
            seen: HashMap::new(),
            ids: Vec::new(),
            values: Vec::new(),
        }
    }

    fn push<R: Read>(&mut self, table: &Table<'_, R>, line: u64, c: usize) -> Result<()> {
        let field = &table.record[c];
        check_field(table.path, line, c, &self.column, field)?;
        if self.kind == LabelKind::Values {
            self.values.push(table.number(line, c)?);
            return Ok(());
        }
        if let Some(known) = &self.known {
            let i = known
                .iter()
                .position(|n| n == field)
                .ok_or_else(|| table.bad_value(line, c, "one of the known class labels"))?;
            self.ids.push(i);
            return Ok(());
        }
        let next = self.seen.len();
        let id = match self.seen.get(field) {
            Some(&id) => id,
            None if next >= limits::MAX_CLASSES => {
                return Err(Error::Limit {
                    path: table.path.to_path_buf(),
                    message: format!(
                        "line {line}: column `{}` holds more than {} distinct class labels, the limit",
                        limits::excerpt(&self.column),
                        limits::MAX_CLASSES
                    ),
                });
            }
            None => {
                self.seen.insert(field.to_string(), next);
                next
            }
        };
        self.ids.push(id);
        Ok(())
    }

    /// The targets and, for classes, their names: the known ones, or the distinct labels
    /// sorted (numerically when all are integers) with the ids remapped to that order.
    fn finish(self, rows: usize, path: &Path) -> Result<(Targets, Option<Vec<String>>)> {
        if self.kind == LabelKind::Values {
            let t = Tensor::from_shape_vec(IxDyn(&[rows, 1]), self.values).map_err(|e| {
                Error::Mismatch {
                    message: format!("{}: {e}", path.display()),
                }
            })?;
            return Ok((Targets::Values(t), None));
        }
        if let Some(known) = self.known {
            return Ok((Targets::Classes(self.ids), Some(known)));
        }
        let mut names: Vec<(String, usize)> = self.seen.into_iter().collect();
        if names.iter().all(|(n, _)| n.parse::<i64>().is_ok()) {
            names.sort_by_key(|(n, _)| n.parse::<i64>().expect("checked"));
        } else {
            names.sort();
        }
        let mut remap = vec![0; names.len()];
        for (sorted, (_, first_seen)) in names.iter().enumerate() {
            remap[*first_seen] = sorted;
        }
        let classes = self.ids.into_iter().map(|id| remap[id]).collect();
        Ok((
            Targets::Classes(classes),
            Some(names.into_iter().map(|(n, _)| n).collect()),
        ))
    }
}

/// A CSV error as ours: a limit hit while reading, an I/O error, or a syntax error with
/// its line.
fn syntax(path: &Path, e: csv::Error) -> Error {
    let line = e.position().map_or(0, csv::Position::line);
    let message = e.to_string();
    match e.into_kind() {
        csv::ErrorKind::Io(source) => bounded::io_error(path, source),
        _ => Error::CsvSyntax {
            path: path.to_path_buf(),
            line,
            message,
        },
    }
}

/// The header's names, shortened to the first ten and the last two for wide files.
fn column_list(header: &[String]) -> String {
    let names: Vec<String> = header.iter().map(|h| limits::excerpt(h)).collect();
    if names.len() <= 12 {
        return names.join(", ");
    }
    format!(
        "{}, …, {} ({} columns)",
        names[..10].join(", "),
        names[names.len() - 2..].join(", "),
        names.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, label: &str) -> Result<Dataset> {
        parse_csv(
            text.as_bytes(),
            Path::new("data.csv"),
            &CsvOptions::classes(label),
        )
    }

    #[test]
    fn reads_features_and_maps_labels() {
        let d = parse("h,w,sex\n180,80,M\n160,55,F\n170, 60 ,F\n", "sex").unwrap();
        assert_eq!(
            d.x,
            ndarray::array![[180.0f32, 80.0], [160.0, 55.0], [170.0, 60.0]].into_dyn()
        );
        assert_eq!(d.class_names.as_deref().unwrap(), ["F", "M"]);
        assert_eq!(d.classes().unwrap(), &[1, 0, 0]);
        assert_eq!(d.feature_names, ["h", "w"]);
        assert!(d.ignored_columns.is_empty());
    }

    #[test]
    fn integer_labels_sort_numerically() {
        let d = parse("a,y\n1,10\n2,2\n3,9\n", "y").unwrap();
        assert_eq!(d.class_names.as_deref().unwrap(), ["2", "9", "10"]);
        assert_eq!(d.classes().unwrap(), &[2, 0, 1]);
    }

    #[test]
    fn regression_targets() {
        let opts = CsvOptions {
            label: "y".into(),
            kind: LabelKind::Values,
            ..Default::default()
        };
        let d = parse_csv("x,y\n1,0.5\n2,-1.5\n".as_bytes(), Path::new("r.csv"), &opts).unwrap();
        assert_eq!(
            d.targets,
            Targets::Values(ndarray::array![[0.5f32], [-1.5]].into_dyn())
        );
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let e = parse("h,w,sex\n180,80,M\n160,abc,F\n", "sex").unwrap_err();
        assert_eq!(
            e.to_string(),
            "data.csv: line 3, column 2 (`w`): expected a finite number, got `abc`"
        );
        let e = parse("h,w,sex\n180,80,M\n160,F\n", "sex").unwrap_err();
        assert_eq!(
            e.to_string(),
            "data.csv: line 3: expected 3 columns (as in the header), got 2"
        );
        let e = parse("h,w,sex\n180,80,M\n", "gender").unwrap_err();
        assert_eq!(
            e.to_string(),
            "data.csv: no column named `gender` in the header; columns are: h, w, sex"
        );
        let e = parse("", "sex").unwrap_err();
        assert_eq!(
            e.to_string(),
            "data.csv: empty file, expected a header line with column names"
        );
        let e = parse("h,w,sex\n", "sex").unwrap_err();
        assert_eq!(
            e.to_string(),
            "data.csv: the header is followed by no data rows"
        );
        let e = parse("h,w,sex\n1,NaN,M\n", "sex").unwrap_err();
        assert!(e.to_string().contains("got `NaN`"), "{e}");
        let long = "9".repeat(500);
        let e = parse(&format!("h,sex\n{long},M\n"), "sex").unwrap_err();
        assert!(e.to_string().ends_with("… (500 bytes)`"), "{e}");
    }

    #[test]
    fn duplicate_column_names_are_refused() {
        let e = parse("a,b,a,y\n1,2,3,x\n", "y").unwrap_err();
        assert_eq!(
            e.to_string(),
            "data.csv: columns 1 and 3 are both named `a`; column names must be distinct"
        );
    }

    #[test]
    fn known_class_names_reject_new_labels() {
        let opts = CsvOptions {
            class_names: Some(vec!["F".into(), "M".into()]),
            ..CsvOptions::classes("sex")
        };
        let e = parse_csv("h,sex\n1,M\n2,X\n".as_bytes(), Path::new("d.csv"), &opts).unwrap_err();
        assert_eq!(
            e.to_string(),
            "d.csv: line 3, column 2 (`sex`): expected one of the known class labels, got `X`"
        );
    }

    #[test]
    fn features_are_read_by_name_in_the_models_order() {
        // columns reordered and an extra one: the values follow the names, not positions
        let opts = CsvOptions {
            features: Some(vec!["a".into(), "b".into()]),
            ..CsvOptions::classes("y")
        };
        let d = parse_csv(
            "y,extra,b,a\np,9,2,1\nq,9,4,3\n".as_bytes(),
            Path::new("d.csv"),
            &opts,
        )
        .unwrap();
        assert_eq!(d.x, ndarray::array![[1.0f32, 2.0], [3.0, 4.0]].into_dyn());
        assert_eq!(d.ignored_columns, ["extra"]);
        let opts = CsvOptions {
            features: Some(vec!["a".into(), "c".into()]),
            ..CsvOptions::classes("y")
        };
        let e = parse_csv("y,a,b\np,1,2\n".as_bytes(), Path::new("d.csv"), &opts).unwrap_err();
        assert_eq!(
            e.to_string(),
            "d.csv: no column named `c` in the header; columns are: y, a, b"
        );
        let (x, names, ignored) = parse_csv_features(
            "a,b,c\n1,2,3\n".as_bytes(),
            Path::new("p.csv"),
            Some(&["c".into(), "a".into()]),
            &Limits::default(),
        )
        .unwrap();
        assert_eq!(x, ndarray::array![[3.0f32, 1.0]].into_dyn());
        assert_eq!(
            (names, ignored),
            (vec!["c".into(), "a".into()], vec!["b".to_string()])
        );
    }

    #[test]
    fn reading_stops_at_the_limits() {
        let small = Limits {
            input_bytes: 64,
            line_bytes: 16,
        };
        let opts = CsvOptions {
            limits: small,
            ..CsvOptions::classes("y")
        };
        let e = parse_csv(std::io::repeat(b'0'), Path::new("<stdin>"), &opts).unwrap_err();
        assert_eq!(
            e.to_string(),
            "<stdin>: line 1 is longer than the limit of 16 bytes (set NN_MAX_LINE_BYTES to raise it)"
        );
        let lines = std::io::repeat(b'\n');
        let e = parse_csv(lines, Path::new("<stdin>"), &opts).unwrap_err();
        assert_eq!(
            e.to_string(),
            "<stdin>: more than the limit of 64 bytes (set NN_MAX_INPUT_BYTES to raise it)"
        );
        let big_field = format!("a,y\n1,{}\n", "z".repeat(MAX_NAME_BYTES + 1));
        let e = parse(&big_field, "y").unwrap_err();
        assert!(
            e.to_string()
                .contains("a field of 1025 bytes is more than the limit of 1024"),
            "{e}"
        );
    }

    #[test]
    fn distinct_labels_are_bounded() {
        let mut text = String::from("x,y\n");
        for i in 0..=limits::MAX_CLASSES {
            text.push_str(&format!("1,c{i}\n"));
        }
        let e = parse(&text, "y").unwrap_err();
        assert!(
            e.to_string()
                .contains("holds more than 65536 distinct class labels"),
            "{e}"
        );
    }
}
