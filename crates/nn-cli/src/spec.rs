//! Network specs on the command line: the `--layers` mini-language and model spec files.
//!
//! ```text
//! --layers "dense:128,relu,dense:10"
//!
//! dense:N[:nobias]                  fully connected, N outputs (inputs are inferred)
//! conv:C:KxK[:sS][:pP][:nobias]     C filters of K×K (or KHxKW), stride S, zero padding P
//! maxpool:K[:S] | avgpool:K[:S]     K×K pooling, stride S (default K)
//! batchnorm | bn                    batch norm over features or channels
//! dropout:P                         inverted dropout with rate P
//! relu | sigmoid | tanh | identity | softmax | flatten
//! leaky_relu[:ALPHA]                slope ALPHA left of zero
//! ```
//!
//! A spec file (`.toml` or `.json`) lists the same layers as tables:
//!
//! ```toml
//! [[layers]]
//! kind = "dense"
//! n_out = 128
//! [[layers]]
//! kind = "relu"
//! ```
//!
//! Both only *spell* layers: each item becomes a [`LayerSpec`] holding the attributes the
//! user wrote. The layer kind's configuration type then fills in what is inferred (input
//! widths), applies its defaults and validates every value, with checked arithmetic, before
//! anything is built ([`resolve`]).

use std::io::Read;
use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use nn_core::limits::{self, excerpt};
use nn_layers::{Attr, LayerSpec, Registry, SequentialConfig};

/// Layer kinds the mini-language knows, for messages.
const KNOWN: &str = "dense:N, conv:C:KxK[:sS][:pP], maxpool:K[:S], avgpool:K[:S], batchnorm, dropout:P, relu, sigmoid, tanh, identity, softmax, flatten, leaky_relu[:ALPHA]";

/// The largest spec file read, in bytes.
pub const MAX_SPEC_FILE_BYTES: u64 = 16 << 20;

/// Parses `--layers` into one spec per item.
///
/// # Errors
/// One line naming the item (from 1), the text and what was expected.
pub fn parse_layers(text: &str) -> Result<Vec<LayerSpec>> {
    let mut specs = Vec::new();
    for (pos, raw) in text.split(',').enumerate() {
        if pos >= limits::MAX_LAYERS {
            bail!(
                "--layers has more than {} items, the limit of layers in a network",
                limits::MAX_LAYERS
            );
        }
        let raw = raw.trim();
        let item = parse_item(raw)
            .map_err(|why| anyhow!("--layers item {} `{}`: {why}", pos + 1, excerpt(raw)))?;
        specs.push(item);
    }
    Ok(specs)
}

/// One item of the mini-language.
fn parse_item(raw: &str) -> Result<LayerSpec, String> {
    let mut parts = raw.split(':');
    let kind = parts.next().unwrap_or_default().to_ascii_lowercase();
    let args: Vec<&str> = parts.collect();
    match (kind.as_str(), args.as_slice()) {
        ("dense" | "linear", [n, rest @ ..]) => {
            let spec = LayerSpec::new("dense").with(
                "n_out",
                positive(n).ok_or("expected a positive width, e.g. dense:128")?,
            );
            match rest {
                [] => Ok(spec),
                ["nobias"] => Ok(spec.with("bias", Attr::Bool(false))),
                _ => Err("expected dense:N or dense:N:nobias".into()),
            }
        }
        ("dense" | "linear", []) => Err("dense needs a width, e.g. dense:128".into()),
        ("leaky_relu" | "leakyrelu", args) => {
            let spec = LayerSpec::new("leaky_relu");
            match args {
                [] => Ok(spec),
                [a] => {
                    let alpha = a
                        .parse::<f64>()
                        .map_err(|_| "expected a number, e.g. leaky_relu:0.01")?;
                    Ok(spec.with("alpha", Attr::Float(alpha)))
                }
                _ => Err("expected leaky_relu or leaky_relu:ALPHA".into()),
            }
        }
        (k @ ("relu" | "sigmoid" | "tanh" | "identity" | "softmax" | "flatten"), []) => {
            Ok(LayerSpec::new(k))
        }
        ("conv" | "conv2d", [c, k, rest @ ..]) => parse_conv(c, k, rest),
        ("conv" | "conv2d", _) => Err("expected conv:CHANNELS:KxK, e.g. conv:8:5x5".into()),
        (k @ ("maxpool" | "avgpool"), [size, rest @ ..]) if rest.len() <= 1 => {
            let mut spec = LayerSpec::new(format!("{k}2d")).with(
                "kernel",
                positive(size).ok_or("expected a positive window size")?,
            );
            if let [s] = rest {
                spec = spec.with("stride", positive(s).ok_or("expected a positive stride")?);
            }
            Ok(spec)
        }
        ("maxpool" | "avgpool", _) => Err("expected maxpool:K or maxpool:K:STRIDE".into()),
        ("batchnorm" | "bn", []) => Ok(LayerSpec::new("batchnorm")),
        ("dropout", [p]) => {
            let p: f64 = p
                .parse()
                .map_err(|_| "expected a rate in [0, 1), e.g. dropout:0.5")?;
            Ok(LayerSpec::new("dropout").with("p", Attr::Float(p)))
        }
        ("dropout", _) => Err("expected dropout:RATE, e.g. dropout:0.5".into()),
        ("", _) => Err("empty layer".into()),
        _ => Err(format!("unknown layer; known: {KNOWN}")),
    }
}

/// `conv:C:KxK[:sS][:pP][:nobias]`.
fn parse_conv(c: &str, k: &str, options: &[&str]) -> Result<LayerSpec, String> {
    let c = positive(c).ok_or("expected conv:CHANNELS:KxK, e.g. conv:8:5x5")?;
    let (kh, kw) = parse_kernel(k).ok_or("expected a kernel size like 5x5 or 3")?;
    let mut spec = LayerSpec::new("conv2d")
        .with("out_channels", c)
        .with("kernel", Attr::Ints(vec![kh, kw]));
    for opt in options {
        let value = |prefix: char| opt.strip_prefix(prefix).and_then(|v| v.parse::<i64>().ok());
        spec = match (value('s'), value('p')) {
            (Some(s), _) if s > 0 => spec.with("stride", Attr::Int(s)),
            (_, Some(p)) if p >= 0 => spec.with("padding", Attr::Int(p)),
            _ if *opt == "nobias" => spec.with("bias", Attr::Bool(false)),
            _ => {
                return Err(format!(
                    "unknown conv option `{}`; expected sS (stride), pP (padding) or nobias",
                    excerpt(opt)
                ));
            }
        };
    }
    Ok(spec)
}

/// A positive integer attribute (any size: the configuration checks it against the limits).
fn positive(t: &str) -> Option<Attr> {
    t.parse::<i64>().ok().filter(|v| *v > 0).map(Attr::Int)
}

/// `5x5`, `3x2` or `3` (square).
fn parse_kernel(k: &str) -> Option<(i64, i64)> {
    let pos = |t: &str| t.parse::<i64>().ok().filter(|v| *v > 0);
    match k.split_once(['x', 'X']) {
        Some((h, w)) => Some((pos(h)?, pos(w)?)),
        None => pos(k).map(|v| (v, v)),
    }
}

/// Reads a `.toml` or `.json` spec file: a `layers` list of tables with a `kind` and the
/// layer's attributes.
///
/// # Errors
/// One line naming the file and, for a bad layer, its position (from 1).
pub fn read_spec_file(path: &Path) -> Result<Vec<LayerSpec>> {
    let file = std::fs::File::open(path).with_context(|| path.display().to_string())?;
    let mut text = String::new();
    file.take(MAX_SPEC_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| path.display().to_string())?;
    if text.len() as u64 > MAX_SPEC_FILE_BYTES {
        bail!(
            "{}: more than the limit of {MAX_SPEC_FILE_BYTES} bytes for a spec file",
            path.display()
        );
    }
    let kind = path.extension().and_then(|e| e.to_str());
    parse_spec_text(&text, kind, path)
}

/// As [`read_spec_file`], from the text of a file of the given extension.
///
/// # Errors
/// As [`read_spec_file`].
pub fn parse_spec_text(text: &str, extension: Option<&str>, path: &Path) -> Result<Vec<LayerSpec>> {
    let value: serde_json::Value = match extension {
        Some("json") => serde_json::from_str(text).with_context(|| path.display().to_string())?,
        Some("toml") => {
            let t: toml::Table = toml::from_str(text)
                .map_err(|e| anyhow!("{}: {}", path.display(), toml_message(&e)))?;
            serde_json::to_value(t)?
        }
        _ => bail!(
            "{}: model spec files must end in .toml or .json",
            path.display()
        ),
    };
    let layers = value
        .get("layers")
        .and_then(|l| l.as_array())
        .ok_or_else(|| anyhow!("{}: expected a `layers` list", path.display()))?;
    if layers.len() > limits::MAX_LAYERS {
        bail!(
            "{}: {} layers, more than the limit of {}",
            path.display(),
            layers.len(),
            limits::MAX_LAYERS
        );
    }
    layers
        .iter()
        .enumerate()
        .map(|(i, l)| {
            table_spec(l).map_err(|why| anyhow!("{}: layer {}: {why}", path.display(), i + 1))
        })
        .collect()
}

/// A TOML error on one line: its position and what is wrong, without the excerpt of the
/// offending line (which can be as long as the file).
fn toml_message(e: &toml::de::Error) -> String {
    let text = e.to_string();
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first = lines.next().unwrap_or("TOML parse error");
    let last = lines.next_back().unwrap_or_default();
    if last.is_empty() || last.trim_start().starts_with('|') {
        excerpt(first)
    } else {
        format!("{first}: {}", excerpt(last.trim()))
    }
}

/// One table of a spec file as a layer spec.
fn table_spec(l: &serde_json::Value) -> Result<LayerSpec, String> {
    let obj = l.as_object().ok_or("expected a table")?;
    let kind = obj
        .get("kind")
        .and_then(|k| k.as_str())
        .ok_or("missing `kind`")?;
    let mut spec = LayerSpec::new(kind);
    for (k, v) in obj.iter().filter(|(k, _)| *k != "kind") {
        let key = excerpt(k);
        let a = match v {
            serde_json::Value::Bool(b) => Attr::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Attr::Int(i),
                None => Attr::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            serde_json::Value::String(s) => Attr::Str(s.clone()),
            serde_json::Value::Array(xs) => Attr::Ints(
                xs.iter()
                    .map(|x| {
                        x.as_i64()
                            .ok_or(format!("`{key}` must be a list of integers"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
            _ => return Err(format!("unsupported value for `{key}`")),
        };
        spec.attrs.push((k.clone(), a));
    }
    Ok(spec)
}

/// Whether [`resolve`] puts a `flatten` in front: the rows have more than one axis and
/// the first layer is dense. The note the command prints then.
pub fn flatten_note(specs: &[LayerSpec], input: &[usize]) -> Option<String> {
    (input.len() > 1 && specs.first().is_some_and(|s| s.kind == "dense")).then(|| {
        format!(
            "note: input rows have shape {}; putting `flatten` before the first dense layer",
            nn_core::Shape(input.to_vec())
        )
    })
}

/// The network the specs describe for input rows of shape `input` (no batch axis), with
/// every width inferred and every layer checked on a batch of `batch` rows: each output
/// within the tensor limit, all of them together within the activation limit. When the
/// rows have more than one axis and the first layer is dense, a `flatten` is put in front
/// (see [`flatten_note`]).
///
/// # Errors
/// One line naming the layer (from 0, as `nn inspect` numbers them) and the problem.
pub fn resolve(
    specs: &[LayerSpec],
    input: &[usize],
    batch: usize,
    registry: &Registry,
) -> Result<SequentialConfig> {
    if specs.is_empty() {
        bail!("the network has no layers");
    }
    let mut specs = specs.to_vec();
    if flatten_note(&specs, input).is_some() {
        specs.insert(0, LayerSpec::new("flatten"));
    }
    let mut shape = vec![batch];
    shape.extend_from_slice(input);
    limits::elements(|| format!("a batch of {batch} rows"), &shape)?;
    let cfg = registry.sequential(&specs, &shape)?;
    cfg.output_shapes(&shape)?;
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nn_layers::LayerConfig;

    fn layers(cfg: &SequentialConfig) -> Vec<LayerSpec> {
        cfg.spec().layers("layers").unwrap().to_vec()
    }

    #[test]
    fn mini_language() {
        let items = parse_layers("dense:128, relu,dense:10:nobias,leaky_relu:0.2").unwrap();
        assert_eq!(items.len(), 4);
        assert_eq!(items[2].attrs[1], ("bias".to_string(), Attr::Bool(false)));
        let e = parse_layers("dense:128,gelu").unwrap_err().to_string();
        assert!(
            e.starts_with("--layers item 2 `gelu`: unknown layer; known: dense:N"),
            "{e}"
        );
        assert!(parse_layers("dense:0").is_err());
        assert!(parse_layers("dense").is_err());
        let long = format!("dense:{}", "9".repeat(300));
        let e = parse_layers(&long).unwrap_err().to_string();
        assert!(e.contains("… (306 bytes)`"), "the echo is cut: {e}");
    }

    #[test]
    fn convolutional_items() {
        let items = parse_layers(
            "conv:8:5x5,relu,maxpool:2,conv:16:3:s2:p1:nobias,bn,avgpool:2:1,flatten,dropout:0.5,dense:10",
        )
        .unwrap();
        assert_eq!(items[0].kind, "conv2d");
        assert_eq!(items[3].get("stride"), Some(&Attr::Int(2)));
        let cfg = resolve(&items, &[1, 28, 28], 32, &Registry::new()).unwrap();
        let specs = layers(&cfg);
        // 28 → conv 5×5 → 24 → pool 2 → 12 → conv 3×3 s2 p1 → 6 → avgpool 2 stride 1 → 5; 16·5·5 = 400
        assert_eq!(specs[0].usize("in_channels").unwrap(), 1);
        assert_eq!(specs[4].usize("features").unwrap(), 16);
        assert_eq!(specs[8].usize("n_in").unwrap(), 400);
        assert_eq!(cfg.output_shape(&[1, 1, 28, 28]).unwrap(), vec![1, 10]);
        let e = parse_layers("conv:8:5x5:q3").unwrap_err().to_string();
        assert!(e.contains("unknown conv option `q3`"), "{e}");
        let e = resolve(
            &parse_layers("conv:4:3").unwrap(),
            &[8],
            4,
            &Registry::new(),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            e,
            "layer 0: conv2d: expected shape [n, c, h, w], got [4, 8]"
        );
        let e = resolve(
            &parse_layers("conv:4:9").unwrap(),
            &[1, 5, 5],
            4,
            &Registry::new(),
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("kernel larger than the padded input"),
            "{e:#}"
        );
    }

    #[test]
    fn widths_are_inferred() {
        let items = parse_layers("dense:8,relu,dense:3").unwrap();
        let cfg = resolve(&items, &[5], 4, &Registry::new()).unwrap();
        let specs = layers(&cfg);
        assert_eq!(specs[0].usize("n_in").unwrap(), 5);
        assert_eq!(specs[2].usize("n_in").unwrap(), 8);
        let cfg = resolve(&items, &[1, 4, 4], 4, &Registry::new()).unwrap();
        let specs = layers(&cfg);
        assert_eq!(
            (specs[0].kind.as_str(), specs[1].usize("n_in").unwrap()),
            ("flatten", 16)
        );
    }

    #[test]
    fn sizes_too_large_are_refused_naming_the_layer() {
        let r = Registry::new();
        let e = resolve(&parse_layers("dense:99999999999").unwrap(), &[64], 32, &r).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("layer 0: dense(64 → 99999999999) weight"),
            "{e}"
        );
        let e = resolve(
            &parse_layers("dense:9223372036854775807").unwrap(),
            &[64],
            32,
            &r,
        )
        .unwrap_err();
        assert!(e.to_string().contains("more than the limit"), "{e}");
        let e = resolve(
            &parse_layers("conv:100000:3x3").unwrap(),
            &[1, 28, 28],
            32,
            &r,
        )
        .unwrap_err();
        assert!(e.to_string().contains("output [32, 100000, 26, 26]"), "{e}");
        let e = resolve(
            &parse_layers("dense:4").unwrap(),
            &[100_000, 100_000],
            4,
            &r,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("a batch of 4 rows [4, 100000, 100000]"),
            "{e}"
        );
        let many = vec!["relu"; limits::MAX_LAYERS + 1].join(",");
        let e = parse_layers(&many).unwrap_err().to_string();
        assert_eq!(
            e,
            "--layers has more than 10000 items, the limit of layers in a network"
        );
    }

    #[test]
    fn spec_files_in_both_formats() {
        let toml = "[[layers]]\nkind = \"dense\"\nn_out = 4\n[[layers]]\nkind = \"relu\"\n";
        let specs = parse_spec_text(toml, Some("toml"), Path::new("m.toml")).unwrap();
        assert_eq!(specs[0].get("n_out"), Some(&Attr::Int(4)));
        let json = r#"{"layers": [{"kind": "conv2d", "out_channels": 2, "kernel": [3, 3]}]}"#;
        let specs = parse_spec_text(json, Some("json"), Path::new("m.json")).unwrap();
        assert_eq!(specs[0].get("kernel"), Some(&Attr::Ints(vec![3, 3])));
        let e = parse_spec_text(
            r#"{"layers": [{"n": 1}]}"#,
            Some("json"),
            Path::new("m.json"),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "m.json: layer 1: missing `kind`");
        let many = format!(
            "{{\"layers\": [{}]}}",
            vec![r#"{"kind":"relu"}"#; limits::MAX_LAYERS + 1].join(",")
        );
        let e = parse_spec_text(&many, Some("json"), Path::new("m.json")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "m.json: 10001 layers, more than the limit of 10000"
        );
        // nesting far deeper than the parsers recurse: one short line, no stack overflow
        let deep = format!("a = {}{}\n", "[".repeat(50_000), "]".repeat(50_000));
        let e = parse_spec_text(&deep, Some("toml"), Path::new("d.toml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("d.toml: TOML parse error at line 1"),
            "{e}"
        );
        assert!(e.to_string().len() < 200, "{e}");
        let deep = format!(
            "{{\"layers\": {}{}}}",
            "[".repeat(50_000),
            "]".repeat(50_000)
        );
        let e = parse_spec_text(&deep, Some("json"), Path::new("d.json")).unwrap_err();
        assert!(
            format!("{e:#}").contains("recursion limit exceeded"),
            "{e:#}"
        );
    }
}
