//! The external-data references of an ONNX file, read straight from its protobuf bytes, so a
//! bundle can be checked before any engine opens it: every tensor whose bytes live in another
//! file names that file (`location`) and a byte range (`offset`, `length`) in it.
//!
//! Only the messages that can hold tensors are descended into (model -> graph -> initializers,
//! sparse initializers, node attributes and their sub-graphs); every other field is skipped by
//! its wire type, so a large inline `raw_data` costs nothing to walk.

/// One tensor's bytes in an external file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalRef {
    /// The tensor's name.
    pub tensor: String,
    /// `location`, as written (a path relative to the ONNX file's folder).
    pub location: String,
    pub offset: u64,
    /// `None` when the entry leaves it out (the rest of the file).
    pub length: Option<u64>,
}

/// Why the bytes are not an ONNX model this scanner can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed(pub String);

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// A field's payload.
enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Other,
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .bytes
                .get(self.pos)
                .ok_or_else(|| Malformed("truncated varint".into()))?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(Malformed("varint longer than 10 bytes".into()))
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], Malformed> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| Malformed("a field runs past the end of the file".into()))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// The next (field number, value), or `None` at the end.
    fn field(&mut self) -> Result<Option<(u64, Value<'a>)>, Malformed> {
        if self.pos >= self.bytes.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Value::Other
            }
            2 => {
                let n = self.varint()?;
                Value::Bytes(self.take(n)?)
            }
            5 => {
                self.take(4)?;
                Value::Other
            }
            w => return Err(Malformed(format!("unsupported protobuf wire type {w}"))),
        };
        Ok(Some((key >> 3, value)))
    }
}

fn fields(bytes: &[u8], mut each: impl FnMut(u64, Value<'_>) -> Result<(), Malformed>) -> Result<(), Malformed> {
    let mut r = Reader { bytes, pos: 0 };
    while let Some((n, v)) = r.field()? {
        each(n, v)?;
    }
    Ok(())
}

/// Sub-graphs nest; a hostile file must not exhaust the stack.
const MAX_DEPTH: usize = 64;

// Field numbers from onnx.proto.
const MODEL_GRAPH: u64 = 7;
const GRAPH_NODE: u64 = 1;
const GRAPH_INITIALIZER: u64 = 5;
const GRAPH_SPARSE_INITIALIZER: u64 = 15;
const NODE_ATTRIBUTE: u64 = 5;
const ATTRIBUTE_T: u64 = 5;
const ATTRIBUTE_G: u64 = 6;
const ATTRIBUTE_TENSORS: u64 = 10;
const ATTRIBUTE_GRAPHS: u64 = 11;
const ATTRIBUTE_SPARSE_TENSOR: u64 = 22;
const ATTRIBUTE_SPARSE_TENSORS: u64 = 23;
const SPARSE_VALUES: u64 = 1;
const SPARSE_INDICES: u64 = 2;
const TENSOR_NAME: u64 = 8;
const TENSOR_EXTERNAL_DATA: u64 = 13;
const TENSOR_DATA_LOCATION: u64 = 14;
const ENTRY_KEY: u64 = 1;
const ENTRY_VALUE: u64 = 2;
const LOCATION_EXTERNAL: u64 = 1;

/// Every external-data reference in the ONNX model `bytes`.
pub fn external_refs(bytes: &[u8]) -> Result<Vec<ExternalRef>, Malformed> {
    let mut out = Vec::new();
    fields(bytes, |n, v| match (n, v) {
        (MODEL_GRAPH, Value::Bytes(g)) => graph(g, 0, &mut out),
        _ => Ok(()),
    })?;
    Ok(out)
}

fn graph(bytes: &[u8], depth: usize, out: &mut Vec<ExternalRef>) -> Result<(), Malformed> {
    if depth > MAX_DEPTH {
        return Err(Malformed(format!("sub-graphs nested deeper than {MAX_DEPTH}")));
    }
    fields(bytes, |n, v| match (n, v) {
        (GRAPH_INITIALIZER, Value::Bytes(t)) => tensor(t, out),
        (GRAPH_SPARSE_INITIALIZER, Value::Bytes(s)) => sparse(s, out),
        (GRAPH_NODE, Value::Bytes(node)) => fields(node, |n, v| match (n, v) {
            (NODE_ATTRIBUTE, Value::Bytes(a)) => attribute(a, depth, out),
            _ => Ok(()),
        }),
        _ => Ok(()),
    })
}

fn attribute(bytes: &[u8], depth: usize, out: &mut Vec<ExternalRef>) -> Result<(), Malformed> {
    fields(bytes, |n, v| match (n, v) {
        (ATTRIBUTE_T | ATTRIBUTE_TENSORS, Value::Bytes(t)) => tensor(t, out),
        (ATTRIBUTE_G | ATTRIBUTE_GRAPHS, Value::Bytes(g)) => graph(g, depth + 1, out),
        (ATTRIBUTE_SPARSE_TENSOR | ATTRIBUTE_SPARSE_TENSORS, Value::Bytes(s)) => sparse(s, out),
        _ => Ok(()),
    })
}

fn sparse(bytes: &[u8], out: &mut Vec<ExternalRef>) -> Result<(), Malformed> {
    fields(bytes, |n, v| match (n, v) {
        (SPARSE_VALUES | SPARSE_INDICES, Value::Bytes(t)) => tensor(t, out),
        _ => Ok(()),
    })
}

fn tensor(bytes: &[u8], out: &mut Vec<ExternalRef>) -> Result<(), Malformed> {
    let (mut name, mut external, mut entries) = (String::new(), false, Vec::new());
    fields(bytes, |n, v| {
        match (n, v) {
            (TENSOR_NAME, Value::Bytes(b)) => name = String::from_utf8_lossy(b).into_owned(),
            (TENSOR_DATA_LOCATION, Value::Varint(l)) => external = l == LOCATION_EXTERNAL,
            (TENSOR_EXTERNAL_DATA, Value::Bytes(e)) => {
                let (mut key, mut value) = (String::new(), String::new());
                fields(e, |n, v| {
                    match (n, v) {
                        (ENTRY_KEY, Value::Bytes(b)) => key = String::from_utf8_lossy(b).into_owned(),
                        (ENTRY_VALUE, Value::Bytes(b)) => value = String::from_utf8_lossy(b).into_owned(),
                        _ => {}
                    }
                    Ok(())
                })?;
                entries.push((key, value));
            }
            _ => {}
        }
        Ok(())
    })?;
    if !external && entries.is_empty() {
        return Ok(());
    }
    let get = |k: &str| entries.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let number = |k: &str| -> Result<Option<u64>, Malformed> {
        get(k)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| Malformed(format!("tensor {name}: external data {k} {v:?} is not a byte count")))
            })
            .transpose()
    };
    let location = get("location")
        .ok_or_else(|| Malformed(format!("tensor {name}: external data without a location")))?
        .to_string();
    let (offset, length) = (number("offset")?.unwrap_or(0), number("length")?);
    out.push(ExternalRef {
        tensor: name,
        location,
        offset,
        length,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn bytes_field(n: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint(n << 3 | 2, &mut out);
        varint(payload.len() as u64, &mut out);
        out.extend_from_slice(payload);
        out
    }

    fn entry(k: &str, v: &str) -> Vec<u8> {
        bytes_field(
            TENSOR_EXTERNAL_DATA,
            &[
                bytes_field(ENTRY_KEY, k.as_bytes()),
                bytes_field(ENTRY_VALUE, v.as_bytes()),
            ]
            .concat(),
        )
    }

    fn external_tensor(name: &str, location: &str, offset: &str, length: &str) -> Vec<u8> {
        let mut t = bytes_field(TENSOR_NAME, name.as_bytes());
        t.extend(entry("location", location));
        t.extend(entry("offset", offset));
        t.extend(entry("length", length));
        varint(TENSOR_DATA_LOCATION << 3, &mut t);
        varint(LOCATION_EXTERNAL, &mut t);
        t
    }

    #[test]
    fn finds_initializers_and_tensors_inside_sub_graphs() {
        let inline = [bytes_field(TENSOR_NAME, b"inline"), bytes_field(9, &[0u8; 64])].concat();
        let inner_graph = bytes_field(GRAPH_INITIALIZER, &external_tensor("deep", "../x.data", "0", "8"));
        let node = bytes_field(NODE_ATTRIBUTE, &bytes_field(ATTRIBUTE_G, &inner_graph));
        let g = [
            bytes_field(GRAPH_INITIALIZER, &external_tensor("w", "model.onnx.data", "64", "128")),
            bytes_field(GRAPH_INITIALIZER, &inline),
            bytes_field(GRAPH_NODE, &node),
        ]
        .concat();
        let model = [bytes_field(1, b"ir"), bytes_field(MODEL_GRAPH, &g)].concat();
        let refs = external_refs(&model).expect("parses");
        assert_eq!(refs.len(), 2, "{refs:?}");
        assert_eq!(
            refs[0],
            ExternalRef {
                tensor: "w".into(),
                location: "model.onnx.data".into(),
                offset: 64,
                length: Some(128)
            }
        );
        assert_eq!(
            (refs[1].tensor.as_str(), refs[1].location.as_str()),
            ("deep", "../x.data")
        );
    }

    #[test]
    fn malformed_bytes_are_errors_not_panics() {
        let g = bytes_field(GRAPH_INITIALIZER, &external_tensor("w", "d", "-1", "8"));
        assert!(external_refs(&bytes_field(MODEL_GRAPH, &g))
            .expect_err("a byte count")
            .0
            .contains("byte count"));
        let mut cut = bytes_field(MODEL_GRAPH, &g);
        cut.truncate(cut.len() - 3);
        assert!(external_refs(&cut).is_err());
        assert!(external_refs(&[0xff; 12]).is_err());
        assert!(external_refs(&[]).expect("empty is a model without a graph").is_empty());
        // Nesting beyond the limit.
        let mut deep = bytes_field(GRAPH_INITIALIZER, b"");
        for _ in 0..(MAX_DEPTH + 2) {
            deep = bytes_field(
                GRAPH_NODE,
                &bytes_field(NODE_ATTRIBUTE, &bytes_field(ATTRIBUTE_G, &deep)),
            );
        }
        assert!(external_refs(&bytes_field(MODEL_GRAPH, &deep))
            .expect_err("too deep")
            .0
            .contains("nested"));
    }
}
