//! `GraphBuilder`: the ONNX backend of the shared model definition. It implements
//! [`cuma_model::Ops`] by appending standard ONNX nodes (opset 17, default domain only) instead
//! of computing, so running a `cuma-model` forward pass against it records the graph.

use crate::proto::{self, attribute_type, data_type, AttributeProto, NodeProto, TensorProto, ValueInfoProto};
use crate::quant::{self, QuantBits, QUANT_OPSET};
use cuma_model::{Ops, Result};
use std::collections::{HashMap, HashSet};

/// The opset a float graph imports (a quantized one imports [`QUANT_OPSET`]).
pub const OPSET: i64 = 17;
/// The ONNX IR version written (ORT 1.31 reads <= 13; the bundle contract promises <= 10).
pub const IR_VERSION: i64 = 10;

/// A named value in the graph under construction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value(pub String);

/// How initializers (weights) are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreAs {
    F32,
    /// Stored as float16 and cast to float32 in the graph (half the file; runtimes fold the cast).
    F16,
}

/// How a graph stores its weights: floats per [`StoreAs`], and optionally the projection weights
/// block-quantized (decoder graphs only; [`crate::quant`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeightFormat {
    pub store_as: StoreAs,
    pub quant: Option<QuantBits>,
}

impl From<StoreAs> for WeightFormat {
    fn from(store_as: StoreAs) -> Self {
        Self { store_as, quant: None }
    }
}

/// Collects nodes and initializers.
pub struct GraphBuilder {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    counter: usize,
    store_as: StoreAs,
    /// (value, graph output name) pairs, resolved by [`GraphBuilder::finish`].
    outputs: Vec<(String, String)>,
    /// Block quantization of projection weights ([`GraphBuilder::projection_weight`]).
    quant: Option<QuantBits>,
    /// Projection weights by name, held back until a node reads them: a [`Ops::linear`] reads
    /// them block-quantized, any other node as a float initializer.
    projections: HashMap<String, (Vec<usize>, Vec<f32>)>,
    /// Projection weights already written as float initializers.
    written_float: HashSet<String>,
    /// Projection weights quantized but not yet stored (looked at before a decision).
    blocked: HashMap<String, quant::Blocked>,
    /// Each projection weight already stored block-quantized.
    stored_quant: HashMap<String, StoredQuant>,
    /// The `[in, out]` `DequantizeLinear` output of each quantized projection a `linear` reads.
    dequantized: HashMap<String, Value>,
    /// Per-block sums of each input a quantized projection with minima reads.
    block_sums: HashMap<String, Value>,
    /// How the projection weights were stored, for the export report.
    quant_report: QuantReport,
}

/// The initializers of one block-quantized projection weight (`[in, out]` values, `[in / 32,
/// out]` scales, zero points and, for the affine form, minima).
#[derive(Debug, Clone)]
struct StoredQuant {
    values: Value,
    scales: Value,
    zero_points: Value,
    minima: Option<Value>,
    /// The input size (rows of `values`).
    k: usize,
    bits: QuantBits,
    /// Every block reproduces the source.
    exact: bool,
}

/// What block quantization did to a graph's projection weights.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuantReport {
    /// Tensors stored with 4 / 8 bits.
    pub int4_tensors: usize,
    pub int8_tensors: usize,
    /// Blocks stored exactly (the source already had that block form), of all blocks.
    pub exact_blocks: usize,
    pub blocks: usize,
}

fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        i,
        r#type: attribute_type::INT,
        ..Default::default()
    }
}

fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        ints: ints.to_vec(),
        r#type: attribute_type::INTS,
        ..Default::default()
    }
}

/// A tensor proto holding `values` as little-endian raw data.
pub fn f32_tensor(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type::FLOAT,
        name: name.into(),
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

pub fn i64_tensor(name: &str, dims: &[usize], values: &[i64]) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type::INT64,
        name: name.into(),
        raw_data: values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

/// An integer tensor of `data_type` from its raw little-endian (or packed 4-bit) bytes.
fn int_tensor(name: &str, dims: &[usize], data_type: i32, raw_data: Vec<u8>) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type,
        name: name.into(),
        raw_data,
        ..Default::default()
    }
}

fn f16_tensor(name: &str, dims: &[usize], values: &[f32]) -> TensorProto {
    TensorProto {
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: data_type::FLOAT16,
        name: name.into(),
        raw_data: values
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        ..Default::default()
    }
}

impl GraphBuilder {
    pub fn new(store_as: StoreAs) -> Self {
        Self {
            nodes: Vec::new(),
            initializers: Vec::new(),
            counter: 0,
            store_as,
            outputs: Vec::new(),
            quant: None,
            projections: HashMap::new(),
            written_float: HashSet::new(),
            blocked: HashMap::new(),
            stored_quant: HashMap::new(),
            dequantized: HashMap::new(),
            block_sums: HashMap::new(),
            quant_report: QuantReport::default(),
        }
    }

    /// A builder that stores projection weights block-quantized with `bits` ([`crate::quant`]);
    /// every other weight is stored per `store_as`.
    pub fn quantized(store_as: StoreAs, bits: QuantBits) -> Self {
        Self {
            quant: Some(bits),
            ..Self::new(store_as)
        }
    }

    /// The opset the recorded graph needs.
    pub fn opset(&self) -> i64 {
        if self.quant.is_some() {
            QUANT_OPSET
        } else {
            OPSET
        }
    }

    /// What quantization did so far.
    pub fn quant_report(&self) -> &QuantReport {
        &self.quant_report
    }

    fn fresh(&mut self, hint: &str) -> String {
        self.counter += 1;
        format!("{hint}_{}", self.counter)
    }

    /// Appends a node with `inputs` and one output; returns the output.
    pub fn node(&mut self, op: &str, inputs: &[&Value], attributes: Vec<AttributeProto>) -> Value {
        let out = self.fresh(op);
        self.node_into(op, inputs, attributes, &out);
        Value(out)
    }

    /// Appends a node with `inputs` and `n` outputs; returns them.
    pub fn node_outputs(
        &mut self,
        op: &str,
        inputs: &[&Value],
        attributes: Vec<AttributeProto>,
        n: usize,
    ) -> Vec<Value> {
        self.write_float_projections(inputs);
        let outputs: Vec<String> = (0..n).map(|_| self.fresh(op)).collect();
        let name = format!("n{}_{op}", self.nodes.len());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|v| v.0.clone()).collect(),
            output: outputs.clone(),
            name,
            op_type: op.into(),
            attribute: attributes,
            domain: String::new(),
        });
        outputs.into_iter().map(Value).collect()
    }

    /// Appends a node whose single output gets the given name (graph outputs).
    pub fn node_into(&mut self, op: &str, inputs: &[&Value], attributes: Vec<AttributeProto>, output: &str) -> Value {
        self.write_float_projections(inputs);
        let name = format!("n{}_{op}", self.nodes.len());
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|v| v.0.clone()).collect(),
            output: vec![output.to_string()],
            name,
            op_type: op.into(),
            attribute: attributes,
            domain: String::new(),
        });
        Value(output.to_string())
    }

    /// Makes `v` the graph output `name` (graph outputs need fixed names). [`GraphBuilder::finish`]
    /// renames the node that computes `v`, so no copy is made: an `Identity` per output would
    /// copy the whole KV cache on every decode step. Only a value no node computes (a graph
    /// input or a weight), or one already given another output name, goes through `Identity`.
    pub fn output_as(&mut self, v: &Value, name: &str) -> Value {
        self.outputs.push((v.0.clone(), name.to_string()));
        Value(name.to_string())
    }

    /// Gives each recorded output its name (see [`GraphBuilder::output_as`]).
    fn name_outputs(&mut self) {
        let mut renamed: std::collections::HashMap<String, String> = std::collections::HashMap::new();
        for (value, name) in std::mem::take(&mut self.outputs) {
            if value == name {
                continue;
            }
            if let Some(first) = renamed.get(&value) {
                let source = Value(first.clone());
                self.node_into("Identity", &[&source], Vec::new(), &name);
                continue;
            }
            // Already an output under this name (the value `output_as` returned): keep it, copy.
            if renamed.values().any(|n| *n == value) {
                self.node_into("Identity", &[&Value(value)], Vec::new(), &name);
                continue;
            }
            match self.nodes.iter().position(|n| n.output.contains(&value)) {
                Some(producer) => {
                    for node in &mut self.nodes {
                        for input in node.input.iter_mut().filter(|i| **i == value) {
                            input.clone_from(&name);
                        }
                    }
                    for output in self.nodes[producer].output.iter_mut().filter(|o| **o == value) {
                        output.clone_from(&name);
                    }
                    renamed.insert(value, name);
                }
                None => {
                    self.node_into("Identity", &[&Value(value)], Vec::new(), &name);
                }
            }
        }
    }

    /// A weight: stored per [`StoreAs`], always seen by the graph as float32.
    pub fn weight(&mut self, name: &str, dims: &[usize], values: &[f32]) -> Value {
        match self.store_as {
            StoreAs::F32 => {
                self.initializers.push(f32_tensor(name, dims, values));
                Value(name.into())
            }
            StoreAs::F16 => {
                self.initializers.push(f16_tensor(name, dims, values));
                let stored = Value(name.into());
                self.node("Cast", &[&stored], vec![attr_int("to", i64::from(data_type::FLOAT))])
            }
        }
    }

    /// A weight that [`Ops::linear`] multiplies by (`[out, in]`): with quantization on, held back
    /// and stored block-quantized for each `linear` that reads it, and as a float weight (per
    /// [`StoreAs`]) only if another node reads it too (a tied embedding's `Gather`). Without
    /// quantization, [`GraphBuilder::weight`].
    pub fn projection_weight(&mut self, name: &str, dims: &[usize], values: Vec<f32>) -> Value {
        if self.quant.is_none() || dims.len() != 2 {
            return self.weight(name, dims, &values);
        }
        self.projections.insert(name.to_string(), (dims.to_vec(), values));
        Value(name.into())
    }

    /// Writes the float initializer of every held-back projection weight among `inputs` that
    /// has none yet (the node about to be appended reads it as a plain tensor).
    fn write_float_projections(&mut self, inputs: &[&Value]) {
        for v in inputs {
            if !self.projections.contains_key(&v.0) || self.written_float.contains(&v.0) {
                continue;
            }
            self.written_float.insert(v.0.clone());
            let (dims, values) = &self.projections[&v.0];
            match self.store_as {
                StoreAs::F32 => self.initializers.push(f32_tensor(&v.0, dims, values)),
                StoreAs::F16 => {
                    let stored = format!("{}.f16", v.0);
                    self.initializers.push(f16_tensor(&stored, dims, values));
                    let to = vec![attr_int("to", i64::from(data_type::FLOAT))];
                    self.nodes.push(NodeProto {
                        input: vec![stored],
                        output: vec![v.0.clone()],
                        name: format!("n{}_Cast", self.nodes.len()),
                        op_type: "Cast".into(),
                        attribute: to,
                        domain: String::new(),
                    });
                }
            }
        }
    }

    /// `x W^T` for the held-back projection weight `name`, block-quantized with `bits`: a
    /// blocked `DequantizeLinear` of its `[in, out]` values feeding a `MatMul`, plus, for the
    /// affine form, the block minima's share `(x summed per block) M` ([`crate::quant`]).
    fn quantized_linear(&mut self, x: &Value, name: &str, bits: QuantBits) -> Value {
        let stored = self.stored_quant(name, bits);
        let weight = match self.dequantized.get(name) {
            Some(w) => w.clone(),
            None => {
                let w = self.dequantize_blocks(&stored.values, &stored.scales, &stored.zero_points);
                self.dequantized.insert(name.to_string(), w.clone());
                w
            }
        };
        let y = self.node("MatMul", &[x, &weight], Vec::new());
        let Some(minima) = &stored.minima else { return y };
        let sums = self.block_sums(x, stored.k);
        let shift = self.node("MatMul", &[&sums, minima], Vec::new());
        self.node("Add", &[&y, &shift], Vec::new())
    }

    /// `DequantizeLinear` of blocks along axis 0.
    fn dequantize_blocks(&mut self, values: &Value, scales: &Value, zero_points: &Value) -> Value {
        self.node(
            "DequantizeLinear",
            &[values, scales, zero_points],
            vec![attr_int("axis", 0), attr_int("block_size", quant::BLOCK as i64)],
        )
    }

    /// Rows `ids` (`[batch, seq]`) of the held-back table `name` read from int8 blocks,
    /// `[batch, seq, in]`, when those carry a Q8_0 source exactly (SmolLM2's table in an 8-bit
    /// export): a `[vocab, in]` copy of the blocks (`{name}.rows.*`, blocked along `in`) is
    /// gathered, and only the gathered rows are dequantized, so no float table is stored. It is
    /// a copy because ONNX Runtime fuses a quantized lm-head into `MatMulNBits` only when nothing
    /// else reads its initializers. `None` otherwise (a float table would lose precision, and
    /// packed 4-bit `Gather` is not something runtimes implement widely): the table is then
    /// gathered from floats.
    fn quantized_gather(&mut self, name: &str, ids: &Value, bits: QuantBits) -> Option<Value> {
        if self.stored_width(name, bits) != Some(QuantBits::Int8) {
            return None;
        }
        let blocked = match self.blocked.remove(name) {
            Some(b) => b,
            None => self.quantize_projection(name, bits),
        };
        if blocked.form != quant::Form::Symmetric8 || !blocked.is_exact() {
            self.blocked.insert(name.to_string(), blocked);
            return None;
        }
        let (k, n, kb) = (blocked.k, blocked.n, blocked.k.div_ceil(quant::BLOCK));
        // [k, n] -> [n, k] and [kb, n] -> [n, kb].
        let values: Vec<u8> = (0..n)
            .flat_map(|r| (0..k).map(move |c| (r, c)))
            .map(|(r, c)| blocked.values[c * n + r] as u8)
            .collect();
        let scales: Vec<f32> = (0..n)
            .flat_map(|r| (0..kb).map(move |c| (r, c)))
            .map(|(r, c)| blocked.scales[c * n + r])
            .collect();
        let names = [
            format!("{name}.rows.quant"),
            format!("{name}.rows.scale"),
            format!("{name}.rows.zero_point"),
        ];
        self.initializers
            .push(int_tensor(&names[0], &[n, k], data_type::INT8, values));
        self.initializers.push(f32_tensor(&names[1], &[n, kb], &scales));
        self.initializers
            .push(int_tensor(&names[2], &[n, kb], data_type::INT8, vec![0; n * kb]));
        // The lm-head's blocks are still to be stored from it.
        self.blocked.insert(name.to_string(), blocked);
        let gathered: Vec<Value> = names
            .iter()
            .map(|v| self.node("Gather", &[&Value(v.clone()), ids], vec![attr_int("axis", 0)]))
            .collect();
        Some(self.node(
            "DequantizeLinear",
            &gathered.iter().collect::<Vec<_>>(),
            vec![attr_int("axis", -1), attr_int("block_size", quant::BLOCK as i64)],
        ))
    }

    /// `x` `[.., k]` summed over each block of [`quant::BLOCK`] features, `[.., ceil(k / BLOCK)]`:
    /// one product with a constant 0/1 matrix, made once per input.
    fn block_sums(&mut self, x: &Value, k: usize) -> Value {
        if let Some(v) = self.block_sums.get(&x.0) {
            return v.clone();
        }
        let blocks = k.div_ceil(quant::BLOCK);
        let mut indicator = vec![0f32; k * blocks];
        for row in 0..k {
            indicator[row * blocks + row / quant::BLOCK] = 1.0;
        }
        let indicator = self.const_f32(&indicator, &[k, blocks]);
        let sums = self.node("MatMul", &[x, &indicator], Vec::new());
        self.block_sums.insert(x.0.clone(), sums.clone());
        sums
    }

    /// Projection weight `name` block-quantized (not stored).
    fn quantize_projection(&self, name: &str, bits: QuantBits) -> quant::Blocked {
        let (dims, values) = &self.projections[name];
        quant::quantize(values, dims[0], dims[1], bits)
    }

    /// The width `name` quantizes to and whether every block is exact, without storing it.
    fn quantization_of(&mut self, name: &str, bits: QuantBits) -> (QuantBits, bool) {
        if let Some(s) = self.stored_quant.get(name) {
            return (s.bits, s.exact);
        }
        if !self.blocked.contains_key(name) {
            let b = self.quantize_projection(name, bits);
            self.blocked.insert(name.to_string(), b);
        }
        let b = &self.blocked[name];
        (b.form.bits(), b.is_exact())
    }

    /// The width projection weight `name` is stored with in a `bits` export, `None` for float:
    /// a 4-bit export keeps float a tensor whose exact form is 8-bit (a Q8_0 lm-head), because
    /// ONNX Runtime 1.31.1 runs 8-bit `MatMulNBits` with float activations an order of
    /// magnitude slower than the float product (docs/quantization.md).
    fn stored_width(&mut self, name: &str, bits: QuantBits) -> Option<QuantBits> {
        let (width, _) = self.quantization_of(name, bits);
        if bits == QuantBits::Int4 && width == QuantBits::Int8 {
            self.blocked.remove(name);
            return None;
        }
        Some(width)
    }

    /// The block-quantized initializers of projection weight `name` (written on first use).
    fn stored_quant(&mut self, name: &str, bits: QuantBits) -> StoredQuant {
        if let Some(v) = self.stored_quant.get(name) {
            return v.clone();
        }
        let blocked = match self.blocked.remove(name) {
            Some(b) => b,
            None => self.quantize_projection(name, bits),
        };
        let (n, k) = (blocked.n, blocked.k);
        let report = &mut self.quant_report;
        match blocked.form.bits() {
            QuantBits::Int4 => report.int4_tensors += 1,
            QuantBits::Int8 => report.int8_tensors += 1,
        }
        report.exact_blocks += blocked.exact_blocks;
        report.blocks += blocked.scales.len();
        let blocks_dims = [k.div_ceil(quant::BLOCK), n];
        let q_type = blocked.storage_type();
        let raw = |values: &[i16]| -> Vec<u8> {
            if q_type == data_type::UINT4 {
                quant::pack_u4(values.iter().map(|&v| v as u8))
            } else {
                values.iter().map(|&v| v as u8).collect()
            }
        };
        let zero_points = vec![blocked.zero_point(); blocked.scales.len()];
        let names = [
            format!("{name}.quant"),
            format!("{name}.scale"),
            format!("{name}.zero_point"),
        ];
        self.initializers
            .push(int_tensor(&names[0], &[k, n], q_type, raw(&blocked.values)));
        self.initializers
            .push(f32_tensor(&names[1], &blocks_dims, &blocked.scales));
        self.initializers
            .push(int_tensor(&names[2], &blocks_dims, q_type, raw(&zero_points)));
        let minima = blocked.minima.as_ref().map(|m| {
            let minima_name = format!("{name}.minima");
            self.initializers.push(f32_tensor(&minima_name, &blocks_dims, m));
            Value(minima_name)
        });
        let [values, scales, zero_points] = names.map(Value);
        let stored = StoredQuant {
            values,
            scales,
            zero_points,
            minima,
            k,
            bits: blocked.form.bits(),
            exact: blocked.is_exact(),
        };
        self.stored_quant.insert(name.to_string(), stored.clone());
        stored
    }

    /// A small float32 constant (always stored in full precision).
    pub fn const_f32(&mut self, values: &[f32], dims: &[usize]) -> Value {
        let name = self.fresh("const");
        self.initializers.push(f32_tensor(&name, dims, values));
        Value(name)
    }

    /// A 1-D int64 constant.
    pub fn const_i64(&mut self, values: &[i64]) -> Value {
        let name = self.fresh("const_i64");
        self.initializers.push(i64_tensor(&name, &[values.len()], values));
        Value(name)
    }

    /// A 0-D int64 constant.
    pub fn scalar_i64(&mut self, v: i64) -> Value {
        let name = self.fresh("const_i64");
        self.initializers.push(i64_tensor(&name, &[], &[v]));
        Value(name)
    }

    /// A float32 scalar constant.
    pub fn scalar(&mut self, v: f64) -> Value {
        self.const_f32(&[v as f32], &[])
    }

    /// A node with a `Constant`-free integer attribute list, e.g. `Cast`.
    pub fn cast(&mut self, x: &Value, to: i32) -> Value {
        self.node("Cast", &[x], vec![attr_int("to", i64::from(to))])
    }

    /// Finishes the graph.
    pub fn finish(
        mut self,
        name: &str,
        inputs: Vec<ValueInfoProto>,
        outputs: Vec<ValueInfoProto>,
    ) -> proto::GraphProto {
        self.name_outputs();
        debug_assert!(
            self.projections
                .keys()
                .all(|n| self.written_float.contains(n) || self.dequantized.contains_key(n)),
            "a projection weight no node reads"
        );
        proto::GraphProto {
            node: self.nodes,
            name: name.into(),
            initializer: self.initializers,
            doc_string: String::new(),
            input: inputs,
            output: outputs,
        }
    }

    /// Nodes so far (for tests).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

impl Ops for GraphBuilder {
    type T = Value;

    fn share(&mut self, x: &Value) -> Value {
        x.clone()
    }
    fn matmul(&mut self, a: &Value, b: &Value) -> Result<Value> {
        Ok(self.node("MatMul", &[a, b], Vec::new()))
    }
    fn linear(&mut self, x: &Value, w: &Value, b: Option<&Value>) -> Result<Value> {
        let quantized = match self.quant {
            Some(bits) if self.projections.contains_key(&w.0) => self.stored_width(&w.0, bits).map(|_| bits),
            _ => None,
        };
        let y = match quantized {
            Some(bits) => self.quantized_linear(x, &w.0, bits),
            _ => {
                let wt = self.node("Transpose", &[w], vec![attr_ints("perm", &[1, 0])]);
                self.node("MatMul", &[x, &wt], Vec::new())
            }
        };
        Ok(match b {
            Some(b) => self.node("Add", &[&y, b], Vec::new()),
            None => y,
        })
    }
    fn add(&mut self, a: &Value, b: &Value) -> Result<Value> {
        Ok(self.node("Add", &[a, b], Vec::new()))
    }
    fn sub(&mut self, a: &Value, b: &Value) -> Result<Value> {
        Ok(self.node("Sub", &[a, b], Vec::new()))
    }
    fn mul(&mut self, a: &Value, b: &Value) -> Result<Value> {
        Ok(self.node("Mul", &[a, b], Vec::new()))
    }
    fn div(&mut self, a: &Value, b: &Value) -> Result<Value> {
        Ok(self.node("Div", &[a, b], Vec::new()))
    }
    fn scale(&mut self, x: &Value, s: f64) -> Result<Value> {
        let c = self.scalar(s);
        Ok(self.node("Mul", &[x, &c], Vec::new()))
    }
    fn add_scalar(&mut self, x: &Value, s: f64) -> Result<Value> {
        let c = self.scalar(s);
        Ok(self.node("Add", &[x, &c], Vec::new()))
    }
    fn clamp_min(&mut self, x: &Value, s: f64) -> Result<Value> {
        let c = self.scalar(s);
        Ok(self.node("Max", &[x, &c], Vec::new()))
    }
    fn sqrt(&mut self, x: &Value) -> Result<Value> {
        Ok(self.node("Sqrt", &[x], Vec::new()))
    }
    fn exp(&mut self, x: &Value) -> Result<Value> {
        Ok(self.node("Exp", &[x], Vec::new()))
    }
    fn erf(&mut self, x: &Value) -> Result<Value> {
        Ok(self.node("Erf", &[x], Vec::new()))
    }
    fn sigmoid(&mut self, x: &Value) -> Result<Value> {
        Ok(self.node("Sigmoid", &[x], Vec::new()))
    }
    fn relu(&mut self, x: &Value) -> Result<Value> {
        Ok(self.node("Relu", &[x], Vec::new()))
    }
    fn cos(&mut self, x: &Value) -> Result<Value> {
        Ok(self.node("Cos", &[x], Vec::new()))
    }
    fn sin(&mut self, x: &Value) -> Result<Value> {
        Ok(self.node("Sin", &[x], Vec::new()))
    }
    fn softmax_last(&mut self, x: &Value) -> Result<Value> {
        Ok(self.node("Softmax", &[x], vec![attr_int("axis", -1)]))
    }
    fn mean_keepdim(&mut self, x: &Value, dim: i64) -> Result<Value> {
        // ReduceMean takes its axes as an attribute up to opset 17, as an input from 18.
        if self.opset() >= 18 {
            let axes = self.const_i64(&[dim]);
            return Ok(self.node("ReduceMean", &[x, &axes], vec![attr_int("keepdims", 1)]));
        }
        Ok(self.node(
            "ReduceMean",
            &[x],
            vec![attr_ints("axes", &[dim]), attr_int("keepdims", 1)],
        ))
    }
    fn sum_keepdim(&mut self, x: &Value, dim: i64) -> Result<Value> {
        // Opset 13+: ReduceSum takes its axes as an input.
        let axes = self.const_i64(&[dim]);
        Ok(self.node("ReduceSum", &[x, &axes], vec![attr_int("keepdims", 1)]))
    }
    fn reshape(&mut self, x: &Value, shape: &[i64]) -> Result<Value> {
        let s = self.const_i64(shape);
        Ok(self.node("Reshape", &[x, &s], Vec::new()))
    }
    fn permute(&mut self, x: &Value, perm: &[usize]) -> Result<Value> {
        let p: Vec<i64> = perm.iter().map(|&d| d as i64).collect();
        Ok(self.node("Transpose", &[x], vec![attr_ints("perm", &p)]))
    }
    fn unsqueeze(&mut self, x: &Value, dim: i64) -> Result<Value> {
        let axes = self.const_i64(&[dim]);
        Ok(self.node("Unsqueeze", &[x, &axes], Vec::new()))
    }
    fn concat(&mut self, xs: &[&Value], dim: i64) -> Result<Value> {
        Ok(self.node("Concat", xs, vec![attr_int("axis", dim)]))
    }
    fn slice(&mut self, x: &Value, dim: i64, start: i64, end: i64) -> Result<Value> {
        let (s, e, a) = (self.const_i64(&[start]), self.const_i64(&[end]), self.const_i64(&[dim]));
        Ok(self.node("Slice", &[x, &s, &e, &a], Vec::new()))
    }
    fn split_last(&mut self, x: &Value, widths: &[usize]) -> Result<Vec<Value>> {
        // Split takes its part sizes as an input from opset 13.
        let sizes: Vec<i64> = widths.iter().map(|&w| w as i64).collect();
        let sizes = self.const_i64(&sizes);
        Ok(self.node_outputs("Split", &[x, &sizes], vec![attr_int("axis", -1)], widths.len()))
    }
    fn embedding(&mut self, table: &Value, ids: &Value) -> Result<Value> {
        if let Some(bits) = self.quant.filter(|_| self.projections.contains_key(&table.0)) {
            if let Some(rows) = self.quantized_gather(&table.0, ids, bits) {
                return Ok(rows);
            }
        }
        Ok(self.node("Gather", &[table, ids], vec![attr_int("axis", 0)]))
    }
    fn constant(&mut self, values: &[f32], shape: &[usize]) -> Result<Value> {
        Ok(self.const_f32(values, shape))
    }
    fn argmax_last(&mut self, x: &Value) -> Result<Value> {
        // select_last_index = 0: ties go to the lowest index, as in every cuma backend.
        Ok(self.node(
            "ArgMax",
            &[x],
            vec![
                attr_int("axis", -1),
                attr_int("keepdims", 1),
                attr_int("select_last_index", 0),
            ],
        ))
    }
    fn cumsum(&mut self, x: &Value, dim: i64) -> Result<Value> {
        let axis = self.scalar_i64(dim);
        Ok(self.node("CumSum", &[x, &axis], Vec::new()))
    }
    fn cast_f32(&mut self, x: &Value) -> Result<Value> {
        Ok(self.cast(x, data_type::FLOAT))
    }
    fn arange_like(&mut self, x: &Value) -> Result<Value> {
        // A running sum over ones shaped like `x` rather than a `Range` over a shape value, so
        // that backends with symbolic shapes (tract) can follow the length.
        let (zero, one) = (self.scalar_i64(0), self.scalar_i64(1));
        let nothing = self.node("Mul", &[x, &zero], Vec::new());
        let ones = self.node("Add", &[&nothing, &one], Vec::new());
        let counted = self.node("CumSum", &[&ones, &zero], Vec::new());
        Ok(self.node("Sub", &[&counted, &one], Vec::new()))
    }
    fn slice_after(&mut self, x: &Value, dim: i64, other: &Value, other_dim: i64) -> Result<Value> {
        let shape = self.node("Shape", &[other], Vec::new());
        let at = self.const_i64(&[other_dim]);
        let start = self.node("Gather", &[&shape, &at], vec![attr_int("axis", 0)]);
        let (end, axis) = (self.const_i64(&[i64::MAX]), self.const_i64(&[dim]));
        Ok(self.node("Slice", &[x, &start, &end, &axis], Vec::new()))
    }
    fn less_equal(&mut self, a: &Value, b: &Value) -> Result<Value> {
        Ok(self.node("LessOrEqual", &[a, b], Vec::new()))
    }
    fn eq_scalar(&mut self, x: &Value, v: f64) -> Result<Value> {
        let c = self.scalar(v);
        Ok(self.node("Equal", &[x, &c], Vec::new()))
    }
    fn and(&mut self, a: &Value, b: &Value) -> Result<Value> {
        Ok(self.node("And", &[a, b], Vec::new()))
    }
    fn where_scalars(&mut self, cond: &Value, yes: f64, no: f64) -> Result<Value> {
        let (y, n) = (self.scalar(yes), self.scalar(no));
        Ok(self.node("Where", &[cond, &y, &n], Vec::new()))
    }
    fn top_k_last(&mut self, x: &Value, k: usize) -> Result<Option<(Value, Value)>> {
        // ONNX TopK breaks ties by the lower index, as the argmax rounds do.
        let k = self.const_i64(&[k as i64]);
        let mut out = self
            .node_outputs(
                "TopK",
                &[x, &k],
                vec![attr_int("axis", -1), attr_int("largest", 1), attr_int("sorted", 1)],
                2,
            )
            .into_iter();
        Ok(out.next().zip(out.next()))
    }
    fn one_hot(&mut self, idx: &Value, depth: usize) -> Result<Value> {
        // idx [.., 1] == [0, 1, .., depth-1] -> [.., depth], as float.
        let range: Vec<i64> = (0..depth as i64).collect();
        let r = self.const_i64(&range);
        let eq = self.node("Equal", &[idx, &r], Vec::new());
        Ok(self.cast(&eq, data_type::FLOAT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(graph: &proto::GraphProto) -> Vec<(&str, Vec<&str>, Vec<&str>)> {
        graph
            .node
            .iter()
            .map(|n| {
                (
                    n.op_type.as_str(),
                    n.input.iter().map(String::as_str).collect(),
                    n.output.iter().map(String::as_str).collect(),
                )
            })
            .collect()
    }

    /// A `[2, 32]` weight whose rows are exact symmetric 4-bit blocks (scale 0.5).
    fn symmetric_weight() -> Vec<f32> {
        (0..64).map(|i| 0.5 * ((i % 16) as f32 - 8.0)).collect()
    }

    #[test]
    fn quantized_projections_become_dequantize_then_matmul_and_stay_float_only_where_gathered() {
        let mut g = GraphBuilder::quantized(StoreAs::F32, QuantBits::Int4);
        let x = Value("x".into());
        let ids = Value("ids".into());
        let w = g.projection_weight("w", &[2, 32], symmetric_weight());
        // Affine blocks: values 0..15 times 0.25 shifted by 1.0 (no symmetric form is exact).
        let affine: Vec<f32> = (0..64).map(|i| 1.0 + 0.25 * (i % 16) as f32).collect();
        let a = g.projection_weight("a", &[2, 32], affine);
        let y = g.linear(&x, &w, None).expect("linear");
        let z = g.linear(&x, &a, None).expect("linear");
        let e = g.embedding(&w, &ids).expect("gather");
        assert_eq!(g.opset(), QUANT_OPSET);
        let report = g.quant_report();
        assert_eq!((report.int4_tensors, report.int8_tensors), (2, 0));
        assert_eq!((report.exact_blocks, report.blocks), (4, 4));
        g.output_as(&y, "y");
        g.output_as(&z, "z");
        g.output_as(&e, "e");
        let graph = g.finish("t", Vec::new(), Vec::new());
        let types: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "DequantizeLinear",
                "MatMul",
                "DequantizeLinear",
                "MatMul",
                "MatMul",
                "MatMul",
                "Add",
                "Gather"
            ]
        );
        let dq = &graph.node[0];
        assert_eq!(dq.input, ["w.quant", "w.scale", "w.zero_point"]);
        let attrs: Vec<(&str, i64)> = dq.attribute.iter().map(|a| (a.name.as_str(), a.i)).collect();
        assert_eq!(attrs, [("axis", 0), ("block_size", 32)]);
        let init = |name: &str| graph.initializer.iter().find(|t| t.name == name);
        let quant = init("w.quant").expect("quantized values");
        assert_eq!(
            (quant.dims.as_slice(), quant.data_type),
            (&[32i64, 2][..], data_type::UINT4)
        );
        assert_eq!(quant.raw_data.len(), 32, "64 4-bit values in 32 bytes");
        assert_eq!(init("w.scale").expect("scales").dims, [1, 2]);
        assert!(init("w.minima").is_none(), "symmetric blocks need no minima");
        assert_eq!(init("a.minima").expect("minima").dims, [1, 2]);
        // The tied table is gathered as floats; the affine-only weight never is.
        assert_eq!(init("w").expect("float table").dims, [2, 32]);
        assert!(init("a").is_none());
    }

    /// Q8_0-like rows `[2, 32]`: q * 0.5 with q in -127..=127 and 127 reached in every block.
    fn q8_table() -> Vec<f32> {
        (0..64)
            .map(|i| 0.5 * (if i % 32 == 0 { 127 } else { i % 7 - 3 }) as f32)
            .collect()
    }

    /// A tied table `t` (Q8_0-like) gathered by `ids` and multiplied by `x` as the lm-head, in a
    /// `bits` export: the graph and the quantization report.
    fn tied_table_graph(bits: QuantBits) -> (proto::GraphProto, QuantReport) {
        let mut g = GraphBuilder::quantized(StoreAs::F32, bits);
        let (x, ids) = (Value("x".into()), Value("ids".into()));
        let t = g.projection_weight("t", &[2, 32], q8_table());
        let e = g.embedding(&t, &ids).expect("gather");
        let y = g.linear(&x, &t, None).expect("tied head");
        g.output_as(&e, "e");
        g.output_as(&y, "y");
        let report = g.quant_report().clone();
        (g.finish("t", Vec::new(), Vec::new()), report)
    }

    #[test]
    fn a_4_bit_export_keeps_an_8_bit_tensor_float() {
        let (graph, report) = tied_table_graph(QuantBits::Int4);
        assert_eq!(report, QuantReport::default());
        let types: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(types, ["Gather", "Transpose", "MatMul"]);
        let floats: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(floats, ["t"], "one float table, shared by the gather and the head");
    }

    #[test]
    fn an_exact_8_bit_table_is_gathered_from_its_blocks_without_a_float_copy() {
        let (graph, report) = tied_table_graph(QuantBits::Int8);
        assert_eq!(report.int8_tensors, 1);
        let types: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "Gather",
                "Gather",
                "Gather",
                "DequantizeLinear",
                "DequantizeLinear",
                "MatMul"
            ]
        );
        assert_eq!(graph.node[0].input, ["t.rows.quant", "ids"]);
        // The head's blocks are read by its DequantizeLinear alone (what MatMulNBits fusion needs).
        let readers = graph
            .node
            .iter()
            .filter(|n| n.input.iter().any(|i| i == "t.quant"))
            .count();
        assert_eq!(readers, 1);
        let init = |name: &str| graph.initializer.iter().find(|t| t.name == name);
        let rows = init("t.rows.quant").expect("row-major copy");
        assert_eq!(
            (rows.dims.as_slice(), rows.data_type),
            (&[2i64, 32][..], data_type::INT8)
        );
        // Row 1 holds the second table row: 127 first, then (i % 7 - 3) for i = 33..63.
        assert_eq!(rows.raw_data[32] as i8, 127);
        assert_eq!(rows.raw_data[33] as i8, (33 % 7 - 3) as i8);
        assert!(init("t").is_none(), "no float copy of the table");
    }

    #[test]
    fn an_unquantized_builder_stores_projections_as_plain_weights() {
        let mut g = GraphBuilder::new(StoreAs::F32);
        let x = Value("x".into());
        let w = g.projection_weight("w", &[2, 32], symmetric_weight());
        let y = g.linear(&x, &w, None).expect("linear");
        g.output_as(&y, "y");
        assert_eq!(g.opset(), OPSET);
        let graph = g.finish("t", Vec::new(), Vec::new());
        let types: Vec<&str> = graph.node.iter().map(|n| n.op_type.as_str()).collect();
        assert_eq!(types, ["Transpose", "MatMul"]);
        assert!(graph.initializer.iter().any(|t| t.name == "w"));
    }

    #[test]
    fn outputs_rename_their_producer_instead_of_copying() {
        let mut g = GraphBuilder::new(StoreAs::F32);
        let x = Value("x".into());
        let y = g.node("Add", &[&x, &x], Vec::new());
        let z = g.node("Mul", &[&y, &x], Vec::new());
        g.output_as(&y, "present");
        g.output_as(&z, "logits");
        g.output_as(&y, "again");
        g.output_as(&x, "echo");
        let present = Value("present".into());
        g.output_as(&present, "present_copy");
        let graph = g.finish("t", Vec::new(), Vec::new());
        assert_eq!(
            ops(&graph),
            vec![
                ("Add", vec!["x", "x"], vec!["present"]),
                // The consumer of a renamed value reads the new name.
                ("Mul", vec!["present", "x"], vec!["logits"]),
                // A second name for one value, and a graph input, still need a node.
                ("Identity", vec!["present"], vec!["again"]),
                ("Identity", vec!["x"], vec!["echo"]),
                ("Identity", vec!["present"], vec!["present_copy"]),
            ]
        );
    }
}
