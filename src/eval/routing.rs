//! Routing analysis (spec section 9): how evenly each router spreads tokens over its experts
//! (and which routers collapsed onto a fixed few), how much two profiles' routes overlap on the
//! same question, and per-country routing signatures for the topology picture.

use std::collections::BTreeMap;

/// A router is reported as collapsed when its k most used experts take at least this share of
/// all selections (k of E experts used uniformly take k / E).
pub const COLLAPSE_SHARE: f64 = 0.9;

/// At most this many prompts per question enter the pairwise overlap (pairs grow quadratically).
pub const OVERLAP_PROMPTS_PER_QUESTION: usize = 48;

/// The routing of one prompt, over its real (unpadded) tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRouting {
    /// Mean gate vector of every router over the prompt's tokens, `[routers * experts]`.
    pub mean_gates: Vec<f32>,
    /// The selected experts, `[routers][tokens][top_k]` flattened.
    pub experts: Vec<u8>,
    pub tokens: usize,
    pub top_k: usize,
}

impl ItemRouting {
    fn experts_at(&self, router: usize, token: usize) -> &[u8] {
        let at = (router * self.tokens + token) * self.top_k;
        &self.experts[at..at + self.top_k]
    }
}

/// One routed prompt with what the analysis groups it by.
pub struct RoutedPrompt<'a> {
    pub question: &'a str,
    pub country: &'a str,
    /// Row of the prompt's profile (prompts with the same row are not compared).
    pub profile: usize,
    pub ids: &'a [u32],
    pub routing: &'a ItemRouting,
}

/// How one router used its experts.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RouterLoad {
    pub router: String,
    /// Share of all selections that went to each expert (sums to 1).
    pub load: Vec<f64>,
    /// Share taken by the k most used experts.
    pub top_k_share: f64,
    pub collapsed: bool,
}

/// Everything `cuma eval --routing` reports.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RoutingReport {
    pub experts: usize,
    pub top_k: usize,
    pub routers: Vec<RouterLoad>,
    pub collapsed_routers: usize,
    /// Mean over questions of the mean pairwise overlap |S_a ∩ S_b| / k between prompts of
    /// different profiles, over the question's shared tokens and every router.
    pub overlap: f64,
    pub overlap_per_question: BTreeMap<String, f64>,
    /// Per country: the mean gate vector of every router, concatenated (`[routers * experts]`).
    pub signatures: BTreeMap<String, Vec<f64>>,
}

/// Builds the report. `names` labels the routers in the order the model returns them.
pub fn analyse(names: &[String], experts: usize, prompts: &[RoutedPrompt<'_>]) -> RoutingReport {
    let top_k = prompts.first().map_or(0, |p| p.routing.top_k);
    let routers = names.len();
    let mut counts = vec![vec![0u64; experts]; routers];
    for p in prompts {
        for (r, row) in counts.iter_mut().enumerate() {
            for t in 0..p.routing.tokens {
                for &e in p.routing.experts_at(r, t) {
                    if let Some(c) = row.get_mut(usize::from(e)) {
                        *c += 1;
                    }
                }
            }
        }
    }
    let loads: Vec<RouterLoad> = names
        .iter()
        .zip(&counts)
        .map(|(name, c)| {
            let total = c.iter().sum::<u64>().max(1) as f64;
            let load: Vec<f64> = c.iter().map(|&x| x as f64 / total).collect();
            let mut sorted = load.clone();
            sorted.sort_by(|a, b| b.total_cmp(a));
            let top_k_share: f64 = sorted.iter().take(top_k).sum();
            RouterLoad {
                router: name.clone(),
                load,
                top_k_share,
                collapsed: top_k < experts && top_k_share >= COLLAPSE_SHARE,
            }
        })
        .collect();
    let overlap_per_question = overlaps(prompts, routers);
    let overlap = if overlap_per_question.is_empty() {
        0.0
    } else {
        overlap_per_question.values().sum::<f64>() / overlap_per_question.len() as f64
    };
    RoutingReport {
        experts,
        top_k,
        collapsed_routers: loads.iter().filter(|l| l.collapsed).count(),
        routers: loads,
        overlap,
        overlap_per_question,
        signatures: signatures(prompts),
    }
}

/// Number of trailing tokens all `ids` share (the question part after differing profiles).
fn common_suffix(ids: &[&[u32]]) -> usize {
    let Some(first) = ids.first() else { return 0 };
    let mut n = ids.iter().map(|x| x.len()).min().unwrap_or(0);
    for other in &ids[1..] {
        n = n.min(
            first
                .iter()
                .rev()
                .zip(other.iter().rev())
                .take_while(|(a, b)| a == b)
                .count(),
        );
    }
    n
}

fn overlaps(prompts: &[RoutedPrompt<'_>], routers: usize) -> BTreeMap<String, f64> {
    let mut by_question: BTreeMap<&str, Vec<&RoutedPrompt<'_>>> = BTreeMap::new();
    for p in prompts {
        let group = by_question.entry(p.question).or_default();
        if group.len() < OVERLAP_PROMPTS_PER_QUESTION && group.iter().all(|q| q.profile != p.profile) {
            group.push(p);
        }
    }
    by_question
        .into_iter()
        .filter(|(_, group)| group.len() >= 2)
        .filter_map(|(question, group)| {
            let shortest = group.iter().map(|p| p.routing.tokens).min().unwrap_or(0);
            let shared = common_suffix(&group.iter().map(|p| p.ids).collect::<Vec<_>>()).min(shortest);
            if shared == 0 || routers == 0 {
                return None;
            }
            let (mut sum, mut pairs) = (0.0, 0usize);
            for (i, a) in group.iter().enumerate() {
                for b in &group[i + 1..] {
                    let mut same = 0usize;
                    for r in 0..routers {
                        for t in 0..shared {
                            let ea = a.routing.experts_at(r, a.routing.tokens - shared + t);
                            let eb = b.routing.experts_at(r, b.routing.tokens - shared + t);
                            same += ea.iter().filter(|e| eb.contains(e)).count();
                        }
                    }
                    sum += same as f64 / (routers * shared * a.routing.top_k.max(1)) as f64;
                    pairs += 1;
                }
            }
            Some((question.to_string(), sum / pairs as f64))
        })
        .collect()
}

fn signatures(prompts: &[RoutedPrompt<'_>]) -> BTreeMap<String, Vec<f64>> {
    let mut sums: BTreeMap<&str, (Vec<f64>, usize)> = BTreeMap::new();
    for p in prompts {
        let e = sums
            .entry(p.country)
            .or_insert_with(|| (vec![0.0; p.routing.mean_gates.len()], 0));
        for (acc, &g) in e.0.iter_mut().zip(&p.routing.mean_gates) {
            *acc += f64::from(g);
        }
        e.1 += 1;
    }
    sums.into_iter()
        .map(|(c, (v, n))| (c.to_string(), v.into_iter().map(|x| x / n as f64).collect()))
        .collect()
}

/// The report as Markdown: the headline numbers, then one row per router.
pub fn markdown(r: &RoutingReport) -> String {
    let mut s = format!(
        "{} routers, E = {}, k = {}; collapsed (top-k share >= {COLLAPSE_SHARE}): {}; routing overlap between profiles on the same question: {:.3} (over {} questions); {} country signatures\n\n",
        r.routers.len(),
        r.experts,
        r.top_k,
        r.collapsed_routers,
        r.overlap,
        r.overlap_per_question.len(),
        r.signatures.len()
    );
    s.push_str("| router | expert load (%) | top-k share | collapsed |\n|---|---|---|---|\n");
    for l in &r.routers {
        let load: Vec<String> = l.load.iter().map(|x| format!("{:.0}", 100.0 * x)).collect();
        s.push_str(&format!(
            "| {} | {} | {:.3} | {} |\n",
            l.router,
            load.join(" "),
            l.top_k_share,
            if l.collapsed { "yes" } else { "" }
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A prompt routed to `experts` at every token of every router, with uniform-ish gates.
    fn routed(tokens: usize, routers: usize, experts: &[u8]) -> ItemRouting {
        let k = experts.len();
        ItemRouting {
            mean_gates: vec![0.5; routers * 4],
            experts: (0..routers * tokens).flat_map(|_| experts.to_vec()).collect(),
            tokens,
            top_k: k,
        }
    }

    #[test]
    fn common_suffix_of_prompts() {
        assert_eq!(common_suffix(&[&[1, 2, 3, 4], &[9, 3, 4], &[7, 7, 3, 4]]), 2);
        assert_eq!(common_suffix(&[&[1, 2], &[1, 3]]), 0);
    }

    #[test]
    fn overlap_load_and_collapse() {
        let (a, b, c) = (routed(3, 2, &[0, 1]), routed(3, 2, &[1, 2]), routed(3, 2, &[0, 1]));
        let ids_a = [5, 6, 10, 11, 12];
        let ids_b = [7, 10, 11, 12];
        let p = |routing, ids, profile, country| RoutedPrompt {
            question: "q",
            country,
            profile,
            ids,
            routing,
        };
        // Two profiles, half of their experts shared on the 3 common tokens.
        let prompts = [
            p(&a, &ids_a[2..], 0, "X"),
            p(&b, &ids_b[1..], 1, "Y"),
            p(&c, &ids_a[2..], 0, "X"),
        ];
        let names = vec!["r0".to_string(), "r1".to_string()];
        let report = analyse(&names, 4, &prompts);
        // The third prompt repeats profile 0 and is not compared.
        assert_eq!(report.overlap_per_question["q"], 0.5);
        // Expert 1 is picked by all three, 0 by two, 2 by one: 9 tokens x 2 per router.
        assert_eq!(report.routers[0].load, vec![6.0 / 18.0, 9.0 / 18.0, 3.0 / 18.0, 0.0]);
        assert!(!report.routers[0].collapsed, "top-2 share 15/18 < 0.9");
        let same = analyse(&names, 4, &[p(&a, &ids_a[2..], 0, "X"), p(&c, &ids_a[2..], 1, "Y")]);
        assert!(same.routers.iter().all(|r| r.collapsed && r.top_k_share == 1.0));
        assert_eq!(same.overlap, 1.0);
        assert_eq!(same.signatures["X"], vec![0.5; 8]);
    }
}
