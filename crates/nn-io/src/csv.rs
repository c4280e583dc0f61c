//! CSV data sets: a header line, numeric feature columns and one label column chosen by
//! name.
//!
//! Class labels may be words (`setosa`) or numbers (`7`); they are mapped to indices in
//! sorted order (numerically when every label is an integer), and their names are kept so
//! that predictions can be printed as the original labels. Every problem is reported with
//! the file, the line (the header is line 1) and, for a bad field, the column.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;

use ndarray::{Array2, IxDyn};
use nn_core::Tensor;

use crate::dataset::{Dataset, Targets};
use crate::error::{Error, Result, io};

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
/// [`Error::Io`], [`Error::Empty`], [`Error::UnknownColumn`], [`Error::ColumnCount`],
/// [`Error::BadValue`] or [`Error::CsvSyntax`], each naming the file and the line.
pub fn read_csv(path: &Path, opts: &CsvOptions) -> Result<Dataset> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    parse_csv(std::io::BufReader::new(file), path, opts)
}

/// Reads feature columns only (no label), e.g. rows to predict; `columns` selects and orders
/// them by name when given (other columns, such as a label, are ignored).
///
/// # Errors
/// As [`read_csv`]; [`Error::UnknownColumn`] for a requested column not in the header.
pub fn read_csv_features(path: &Path, columns: Option<&[String]>) -> Result<(Tensor, Vec<String>)> {
    let file = std::fs::File::open(path).map_err(io(path))?;
    parse_csv_features(std::io::BufReader::new(file), path, columns)
}

/// Parsed header and rows of a CSV source.
struct Table {
    header: Vec<String>,
    rows: Vec<(u64, csv::StringRecord)>,
}

fn read_table(reader: impl Read, path: &Path) -> Result<Table> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(reader);
    let syntax = |e: csv::Error| -> Error {
        let line = e.position().map_or(0, csv::Position::line);
        let message = e.to_string();
        match e.into_kind() {
            csv::ErrorKind::Io(source) => Error::Io {
                path: path.to_path_buf(),
                source,
            },
            _ => Error::CsvSyntax {
                path: path.to_path_buf(),
                line,
                message,
            },
        }
    };
    let header: Vec<String> = r
        .headers()
        .map_err(syntax)?
        .iter()
        .map(str::to_string)
        .collect();
    if header.is_empty() || header.iter().all(String::is_empty) {
        return Err(Error::Empty {
            path: path.to_path_buf(),
            what: "empty file, expected a header line with column names",
        });
    }
    let mut rows = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(syntax)?;
        let line = rec.position().map_or(0, csv::Position::line);
        if rec.len() != header.len() {
            return Err(Error::ColumnCount {
                path: path.to_path_buf(),
                line,
                expected: header.len(),
                got: rec.len(),
            });
        }
        rows.push((line, rec));
    }
    if rows.is_empty() {
        return Err(Error::Empty {
            path: path.to_path_buf(),
            what: "the header is followed by no data rows",
        });
    }
    Ok(Table { header, rows })
}

fn column(table: &Table, path: &Path, name: &str) -> Result<usize> {
    table
        .header
        .iter()
        .position(|h| h == name)
        .ok_or_else(|| Error::UnknownColumn {
            path: path.to_path_buf(),
            column: name.to_string(),
            available: column_list(&table.header),
        })
}

/// The header's names, shortened to the first ten and the last two for wide files.
fn column_list(header: &[String]) -> String {
    if header.len() <= 12 {
        return header.join(", ");
    }
    format!(
        "{}, …, {} ({} columns)",
        header[..10].join(", "),
        header[header.len() - 2..].join(", "),
        header.len()
    )
}

fn number(table: &Table, path: &Path, line: u64, col: usize, field: &str) -> Result<f32> {
    match field.parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(Error::BadValue {
            path: path.to_path_buf(),
            line,
            column: col + 1,
            name: table.header[col].clone(),
            expected: "a finite number",
            value: field.to_string(),
        }),
    }
}

/// Reads a data set from any reader; `path` names the source in messages.
///
/// # Errors
/// As [`read_csv`].
pub fn parse_csv(reader: impl Read, path: &Path, opts: &CsvOptions) -> Result<Dataset> {
    let table = read_table(reader, path)?;
    let label = column(&table, path, &opts.label)?;
    let features: Vec<usize> = (0..table.header.len()).filter(|&c| c != label).collect();
    let x = parse_matrix(&table, path, &features)?;
    let feature_names = features.iter().map(|&c| table.header[c].clone()).collect();
    let (targets, class_names) = match opts.kind {
        LabelKind::Values => {
            let mut t = Vec::with_capacity(table.rows.len());
            for (line, rec) in &table.rows {
                t.push(number(&table, path, *line, label, &rec[label])?);
            }
            let n = t.len();
            let t = Tensor::from_shape_vec(IxDyn(&[n, 1]), t).expect("one value per row");
            (Targets::Values(t), None)
        }
        LabelKind::Classes => {
            let names = match &opts.class_names {
                Some(n) => n.clone(),
                None => class_names(table.rows.iter().map(|(_, r)| &r[label])),
            };
            let mut c = Vec::with_capacity(table.rows.len());
            for (line, rec) in &table.rows {
                let v = &rec[label];
                let Some(i) = names.iter().position(|n| n == v) else {
                    return Err(Error::BadValue {
                        path: path.to_path_buf(),
                        line: *line,
                        column: label + 1,
                        name: table.header[label].clone(),
                        expected: "one of the known class labels",
                        value: v.to_string(),
                    });
                };
                c.push(i);
            }
            (Targets::Classes(c), Some(names))
        }
    };
    let mut d = Dataset::new(x, targets)?;
    d.class_names = class_names;
    d.feature_names = feature_names;
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
) -> Result<(Tensor, Vec<String>)> {
    let table = read_table(reader, path)?;
    let cols: Vec<usize> = match columns {
        Some(names) => names
            .iter()
            .map(|n| column(&table, path, n))
            .collect::<Result<_>>()?,
        None => (0..table.header.len()).collect(),
    };
    let x = parse_matrix(&table, path, &cols)?;
    Ok((x, cols.iter().map(|&c| table.header[c].clone()).collect()))
}

fn parse_matrix(table: &Table, path: &Path, cols: &[usize]) -> Result<Tensor> {
    let mut x = Array2::<f32>::zeros((table.rows.len(), cols.len()));
    for (i, (line, rec)) in table.rows.iter().enumerate() {
        for (j, &c) in cols.iter().enumerate() {
            x[[i, j]] = number(table, path, *line, c, &rec[c])?;
        }
    }
    Ok(x.into_dyn())
}

/// Distinct labels in sorted order: numerically when all are integers, else as text.
fn class_names<'a>(labels: impl Iterator<Item = &'a str>) -> Vec<String> {
    let set: BTreeSet<&str> = labels.collect();
    let mut names: Vec<String> = set.into_iter().map(str::to_string).collect();
    if names.iter().all(|n| n.parse::<i64>().is_ok()) {
        names.sort_by_key(|n| n.parse::<i64>().expect("checked"));
    }
    names
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
            class_names: None,
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
    fn feature_columns_by_name() {
        let (x, names) = parse_csv_features(
            "a,b,c\n1,2,3\n".as_bytes(),
            Path::new("p.csv"),
            Some(&["c".into(), "a".into()]),
        )
        .unwrap();
        assert_eq!(x, ndarray::array![[3.0f32, 1.0]].into_dyn());
        assert_eq!(names, ["c", "a"]);
    }
}
