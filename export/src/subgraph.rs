//! Cutting recorded graphs down to what their outputs need. One recording may hold two graphs'
//! worth of nodes - the decoder and the routers' profile terms read the same router weights,
//! recorded once - and each file keeps only the nodes and initializers its own outputs depend on.

use crate::proto::{GraphProto, NodeProto, ValueInfoProto};
use std::collections::{HashMap, HashSet};

/// Which of `nodes` computing `values` needs (by index), and every value name on the way
/// (node inputs and the values themselves: initializers and graph inputs among them).
fn needed(nodes: &[NodeProto], values: impl IntoIterator<Item = String>) -> (Vec<bool>, HashSet<String>) {
    let producer: HashMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.output.iter().map(move |o| (o.as_str(), i)))
        .collect();
    let mut keep = vec![false; nodes.len()];
    let mut names = HashSet::new();
    let mut pending: Vec<String> = values.into_iter().collect();
    while let Some(value) = pending.pop() {
        if let Some(&i) = producer.get(value.as_str()) {
            if !keep[i] {
                keep[i] = true;
                pending.extend(nodes[i].input.iter().filter(|s| !s.is_empty()).cloned());
            }
        }
        names.insert(value);
    }
    (keep, names)
}

/// Drops the nodes and initializers that no output of `graph` depends on.
pub fn prune(graph: &mut GraphProto) {
    let (keep, names) = needed(&graph.node, graph.output.iter().map(|o| o.name.clone()));
    let mut kept = keep.into_iter();
    graph.node.retain(|_| kept.next().unwrap_or(false));
    graph.initializer.retain(|t| names.contains(&t.name));
}

/// A new graph `name` with the given `inputs` that computes, for each (recorded value, output),
/// the value of `graph` under the output's name: the nodes and initializers it needs, copied
/// (the nodes in their recorded order, which is topological).
///
/// # Errors
/// When an output's name is already a value the cut graph uses (renaming would merge two).
pub fn extract(
    graph: &GraphProto,
    name: &str,
    inputs: Vec<ValueInfoProto>,
    outputs: Vec<(String, ValueInfoProto)>,
) -> Result<GraphProto, String> {
    let (keep, names) = needed(&graph.node, outputs.iter().map(|(v, _)| v.clone()));
    let mut node: Vec<NodeProto> = graph
        .node
        .iter()
        .zip(&keep)
        .filter(|(_, &k)| k)
        .map(|(n, _)| n.clone())
        .collect();
    let initializer = graph
        .initializer
        .iter()
        .filter(|t| names.contains(&t.name))
        .cloned()
        .collect();
    for (value, info) in &outputs {
        if *value == info.name {
            continue;
        }
        if names.contains(&info.name) {
            return Err(format!(
                "graph `{name}`: output `{}` would rename `{value}` onto a value already in use",
                info.name
            ));
        }
        let produced = node.iter_mut().find(|n| n.output.contains(value));
        match produced {
            Some(n) => {
                for o in n.output.iter_mut().filter(|o| *o == value) {
                    o.clone_from(&info.name);
                }
                for n in &mut node {
                    for i in n.input.iter_mut().filter(|i| *i == value) {
                        i.clone_from(&info.name);
                    }
                }
            }
            // A graph input or initializer passed straight through.
            None => node.push(NodeProto {
                input: vec![value.clone()],
                output: vec![info.name.clone()],
                name: format!("{}_identity", info.name),
                op_type: "Identity".into(),
                ..Default::default()
            }),
        }
    }
    Ok(GraphProto {
        node,
        name: name.into(),
        initializer,
        doc_string: String::new(),
        input: inputs,
        output: outputs.into_iter().map(|(_, info)| info).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::f32_tensor;

    fn node(op: &str, inputs: &[&str], output: &str) -> NodeProto {
        NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.into()],
            op_type: op.into(),
            ..Default::default()
        }
    }

    fn info(name: &str) -> ValueInfoProto {
        ValueInfoProto {
            name: name.into(),
            r#type: None,
        }
    }

    /// x -> a = x W1 -> out;  d -> t = d W2 (a second graph's worth, sharing nothing).
    fn recording() -> GraphProto {
        GraphProto {
            node: vec![
                node("MatMul", &["x", "w1"], "a"),
                node("MatMul", &["d", "w2"], "t"),
                node("Relu", &["a"], "out"),
            ],
            initializer: vec![f32_tensor("w1", &[1], &[1.0]), f32_tensor("w2", &[1], &[2.0])],
            output: vec![info("out")],
            ..Default::default()
        }
    }

    #[test]
    fn prune_keeps_only_what_the_outputs_read() {
        let mut g = recording();
        prune(&mut g);
        let ops: Vec<&str> = g.node.iter().map(|n| n.output[0].as_str()).collect();
        assert_eq!(ops, ["a", "out"]);
        assert_eq!(g.initializer.len(), 1);
        assert_eq!(g.initializer[0].name, "w1");
    }

    #[test]
    fn extract_copies_the_cut_and_renames_its_output() {
        let g = recording();
        let cut = extract(&g, "terms", vec![info("d")], vec![("t".into(), info("terms"))]).expect("cut");
        assert_eq!(cut.node.len(), 1);
        assert_eq!(cut.node[0].output, ["terms"]);
        assert_eq!(cut.initializer.len(), 1);
        assert_eq!(cut.initializer[0].name, "w2");
        assert_eq!(cut.output[0].name, "terms");
        // An input passed through gets an Identity.
        let through = extract(&g, "id", vec![info("d")], vec![("d".into(), info("copy"))]).expect("cut");
        assert_eq!(through.node[0].op_type, "Identity");
        // Renaming onto a name the cut reads is refused.
        assert!(extract(&g, "bad", vec![info("x")], vec![("a".into(), info("x"))]).is_err());
    }
}
