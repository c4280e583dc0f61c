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
//! leaky_relu[:ALPHA]                slope ALPHA left of zero (default 0.01)
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

use std::path::Path;

use anyhow::{Context, Result, anyhow, bail};
use nn_layers::{Attr, LayerSpec, Registry};

/// Layer kinds the mini-language knows, for messages.
const KNOWN: &str = "dense:N, conv:C:KxK[:sS][:pP], maxpool:K[:S], avgpool:K[:S], batchnorm, dropout:P, relu, sigmoid, tanh, identity, softmax, flatten, leaky_relu[:ALPHA]";

/// One layer as written, before input widths are known.
#[derive(Clone, Debug, PartialEq)]
pub struct Item {
    /// The layer kind.
    pub kind: String,
    /// Attributes given by the user.
    pub attrs: Vec<(String, Attr)>,
}

/// Parses `--layers`.
pub fn parse_layers(text: &str) -> Result<Vec<Item>> {
    let mut items = Vec::new();
    for (pos, raw) in text.split(',').enumerate() {
        let raw = raw.trim();
        let mut parts = raw.split(':');
        let kind = parts.next().unwrap_or_default().to_ascii_lowercase();
        let args: Vec<&str> = parts.collect();
        let bad = |why: &str| anyhow!("--layers item {} `{raw}`: {why}", pos + 1);
        let item = match (kind.as_str(), args.as_slice()) {
            ("dense" | "linear", [n, rest @ ..]) => {
                let n: i64 = n
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad("expected a positive width, e.g. dense:128"))?;
                let mut attrs = vec![("n_out".to_string(), Attr::Int(n))];
                match rest {
                    [] => {}
                    ["nobias"] => attrs.push(("bias".into(), Attr::Bool(false))),
                    _ => return Err(bad("expected dense:N or dense:N:nobias")),
                }
                Item {
                    kind: "dense".into(),
                    attrs,
                }
            }
            ("dense" | "linear", []) => return Err(bad("dense needs a width, e.g. dense:128")),
            ("leaky_relu" | "leakyrelu", args) => {
                let alpha = match args {
                    [] => 0.01,
                    [a] => a
                        .parse::<f64>()
                        .map_err(|_| bad("expected a number, e.g. leaky_relu:0.01"))?,
                    _ => return Err(bad("expected leaky_relu or leaky_relu:ALPHA")),
                };
                Item {
                    kind: "leaky_relu".into(),
                    attrs: vec![("alpha".into(), Attr::Float(alpha))],
                }
            }
            (k @ ("relu" | "sigmoid" | "tanh" | "identity" | "softmax" | "flatten"), []) => Item {
                kind: k.into(),
                attrs: Vec::new(),
            },
            ("conv" | "conv2d", [c, k, rest @ ..]) => {
                let c: i64 = c
                    .parse()
                    .ok()
                    .filter(|c| *c > 0)
                    .ok_or_else(|| bad("expected conv:CHANNELS:KxK, e.g. conv:8:5x5"))?;
                let (kh, kw) =
                    parse_kernel(k).ok_or_else(|| bad("expected a kernel size like 5x5 or 3"))?;
                let mut attrs = vec![
                    ("out_channels".to_string(), Attr::Int(c)),
                    ("kernel".to_string(), Attr::Ints(vec![kh, kw])),
                ];
                for opt in rest {
                    let num = |t: &str| t.parse::<i64>().ok().filter(|v| *v >= 0);
                    match (opt.chars().next(), opt.get(1..)) {
                        (Some('s'), Some(v)) if num(v).is_some_and(|v| v > 0) => {
                            attrs.push(("stride".into(), Attr::Ints(vec![num(v).unwrap_or(1); 2])))
                        }
                        (Some('p'), Some(v)) if num(v).is_some() => {
                            attrs.push(("padding".into(), Attr::Ints(vec![num(v).unwrap_or(0); 2])))
                        }
                        _ if *opt == "nobias" => attrs.push(("bias".into(), Attr::Bool(false))),
                        _ => {
                            return Err(bad(&format!(
                                "unknown conv option `{opt}`; expected sS (stride), pP (padding) or nobias"
                            )));
                        }
                    }
                }
                Item {
                    kind: "conv2d".into(),
                    attrs,
                }
            }
            ("conv" | "conv2d", _) => {
                return Err(bad("expected conv:CHANNELS:KxK, e.g. conv:8:5x5"));
            }
            (k @ ("maxpool" | "avgpool"), [size, rest @ ..]) if rest.len() <= 1 => {
                let size: i64 = size
                    .parse()
                    .ok()
                    .filter(|v| *v > 0)
                    .ok_or_else(|| bad("expected a positive window size"))?;
                let stride: i64 = match rest {
                    [s] => s
                        .parse()
                        .ok()
                        .filter(|v| *v > 0)
                        .ok_or_else(|| bad("expected a positive stride"))?,
                    _ => size,
                };
                Item {
                    kind: format!("{k}2d"),
                    attrs: vec![
                        ("kernel".into(), Attr::Int(size)),
                        ("stride".into(), Attr::Int(stride)),
                    ],
                }
            }
            ("maxpool" | "avgpool", _) => {
                return Err(bad("expected maxpool:K or maxpool:K:STRIDE"));
            }
            ("batchnorm" | "bn", []) => Item {
                kind: "batchnorm".into(),
                attrs: Vec::new(),
            },
            ("dropout", [p]) => {
                let p: f64 = p
                    .parse()
                    .ok()
                    .filter(|p| (0.0..1.0).contains(p))
                    .ok_or_else(|| bad("expected a rate in [0, 1), e.g. dropout:0.5"))?;
                Item {
                    kind: "dropout".into(),
                    attrs: vec![("p".into(), Attr::Float(p))],
                }
            }
            ("dropout", _) => return Err(bad("expected dropout:RATE, e.g. dropout:0.5")),
            ("", _) => return Err(bad("empty layer")),
            _ => return Err(bad(&format!("unknown layer; known: {KNOWN}"))),
        };
        items.push(item);
    }
    Ok(items)
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
pub fn read_spec_file(path: &Path) -> Result<Vec<Item>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let value: serde_json::Value = match path.extension().and_then(|e| e.to_str()) {
        Some("json") => {
            serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?
        }
        Some("toml") => {
            let t: toml::Table =
                toml::from_str(&text).with_context(|| format!("{}", path.display()))?;
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
    let mut items = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let err = |why: String| anyhow!("{}: layer {}: {why}", path.display(), i + 1);
        let obj = l
            .as_object()
            .ok_or_else(|| err("expected a table".into()))?;
        let kind = obj
            .get("kind")
            .and_then(|k| k.as_str())
            .ok_or_else(|| err("missing `kind`".into()))?;
        let mut attrs = Vec::new();
        for (k, v) in obj.iter().filter(|(k, _)| *k != "kind") {
            let a = match v {
                serde_json::Value::Bool(b) => Attr::Bool(*b),
                serde_json::Value::Number(n) if n.is_i64() => {
                    Attr::Int(n.as_i64().unwrap_or_default())
                }
                serde_json::Value::Number(n) => Attr::Float(n.as_f64().unwrap_or(f64::NAN)),
                serde_json::Value::String(s) => Attr::Str(s.clone()),
                serde_json::Value::Array(xs) => Attr::Ints(
                    xs.iter()
                        .map(|x| {
                            x.as_i64()
                                .ok_or_else(|| err(format!("`{k}` must be a list of integers")))
                        })
                        .collect::<Result<_>>()?,
                ),
                _ => return Err(err(format!("unsupported value for `{k}`"))),
            };
            attrs.push((k.clone(), a));
        }
        items.push(Item {
            kind: kind.to_string(),
            attrs,
        });
    }
    Ok(items)
}

/// Fills in each layer's input width from the running shape and checks that every layer
/// accepts its input. `input` is one row's shape (no batch axis). When the input has more
/// than one axis and the first layer is dense, a `flatten` is put in front (and said so).
pub fn resolve(
    items: &[Item],
    input: &[usize],
    registry: &Registry,
) -> Result<(Vec<LayerSpec>, Vec<usize>)> {
    if items.is_empty() {
        bail!("the network has no layers");
    }
    let mut items = items.to_vec();
    if input.len() > 1 && items[0].kind == "dense" {
        eprintln!(
            "note: input rows have shape {}; putting `flatten` before the first dense layer",
            nn_core::Shape(input.to_vec())
        );
        items.insert(
            0,
            Item {
                kind: "flatten".into(),
                attrs: Vec::new(),
            },
        );
    }
    let mut shape = vec![1];
    shape.extend_from_slice(input);
    let mut specs = Vec::new();
    let mut rng = nn_core::seeded(0);
    for (i, item) in items.iter().enumerate() {
        let mut spec = LayerSpec {
            kind: item.kind.clone(),
            attrs: item.attrs.clone(),
        };
        let row = nn_core::Shape(shape[1..].to_vec());
        let mut infer = |key: &str, value: Attr| {
            if spec.get(key).is_none() {
                spec.attrs.insert(0, (key.to_string(), value));
            }
        };
        match item.kind.as_str() {
            "dense" if shape.len() != 2 => {
                bail!(
                    "layer {} (dense) needs flat rows but receives {row}; put `flatten` before it",
                    i + 1
                )
            }
            "dense" => infer("n_in", Attr::Int(shape[1] as i64)),
            "conv2d" | "maxpool2d" | "avgpool2d" if shape.len() != 4 => {
                bail!(
                    "layer {} ({}) needs images [channels, height, width] but receives {row}",
                    i + 1,
                    item.kind
                )
            }
            "conv2d" => infer("in_channels", Attr::Int(shape[1] as i64)),
            "batchnorm" => {
                infer("features", Attr::Int(shape[1] as i64));
                infer("eps", Attr::Float(1e-5));
                infer("momentum", Attr::Float(0.1));
            }
            "dropout" => infer("seed", Attr::Int(i as i64 + 1)),
            _ => {}
        }
        let layer = registry
            .build(&spec, &mut rng)
            .with_context(|| format!("layer {} ({})", i + 1, item.kind))?;
        shape = layer.output_shape(&shape).with_context(|| {
            format!("layer {} ({}) does not fit its input", i + 1, layer.name())
        })?;
        specs.push(spec);
    }
    Ok((specs, shape[1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn convolutional_items() {
        let items = parse_layers("conv:8:5x5,relu,maxpool:2,conv:16:3:s2:p1:nobias,bn,avgpool:2:1,flatten,dropout:0.5,dense:10").unwrap();
        assert_eq!(items[0].kind, "conv2d");
        assert_eq!(
            items[3].attrs[2],
            ("stride".to_string(), Attr::Ints(vec![2, 2]))
        );
        let (specs, out) = resolve(&items, &[1, 28, 28], &Registry::new()).unwrap();
        // 28 → conv 5×5 → 24 → pool 2 → 12 → conv 3×3 s2 p1 → 6 → avgpool 2 stride 1 → 5; 16·5·5 = 400
        assert_eq!(specs[0].usize("in_channels").unwrap(), 1);
        assert_eq!(specs[4].usize("features").unwrap(), 16);
        assert_eq!(specs[8].usize("n_in").unwrap(), 400);
        assert_eq!(out, vec![10]);
        let e = parse_layers("conv:8:5x5:q3").unwrap_err().to_string();
        assert!(e.contains("unknown conv option `q3`"), "{e}");
        let e = resolve(&parse_layers("conv:4:3").unwrap(), &[8], &Registry::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("needs images"), "{e}");
        let e = resolve(
            &parse_layers("conv:4:9").unwrap(),
            &[1, 5, 5],
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
        let (specs, out) = resolve(&items, &[5], &Registry::new()).unwrap();
        assert_eq!(specs[0].usize("n_in").unwrap(), 5);
        assert_eq!(specs[2].usize("n_in").unwrap(), 8);
        assert_eq!(out, vec![3]);
        let (specs, out) = resolve(&items, &[1, 4, 4], &Registry::new()).unwrap();
        assert_eq!(
            (specs[0].kind.as_str(), specs[1].usize("n_in").unwrap()),
            ("flatten", 16)
        );
        assert_eq!(out, vec![3]);
    }
}
