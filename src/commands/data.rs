//! `cuma data`: convert, split, pairs, rank-questions, synth.

use crate::cli::{ConvertArgs, DataCommand, PairsArgs, RankQuestionsArgs, SplitArgs, SynthArgs};
use anyhow::Context;
use cuma::data::{jsonl, split, wvs::WvsSource, ChatItem, ChoiceItem, Item};

pub fn run(cmd: &DataCommand) -> anyhow::Result<()> {
    match cmd {
        DataCommand::Convert(a) => convert(a),
        DataCommand::Split(a) => split_cmd(a),
        DataCommand::Synth(a) => synth(a),
        DataCommand::Pairs(a) => pairs(a),
        DataCommand::RankQuestions(a) => rank_questions(a),
    }
}

fn rank_questions(a: &RankQuestionsArgs) -> anyhow::Result<()> {
    use cuma::eval::disagreement;
    let loaded = jsonl::read::<ChoiceItem>(&a.input, ChoiceItem::validate)?;
    eprintln!("{}: {}", a.input.display(), loaded.summary());
    let ranked = disagreement::rank(&loaded.rows, &a.group, a.min_answers, a.seed);
    if ranked.is_empty() {
        anyhow::bail!(
            "no question of {} has two {}s with at least {} answers (--min-answers)",
            a.input.display(),
            a.group,
            a.min_answers
        );
    }
    let table = disagreement::markdown(&ranked, &a.group);
    if let Some(stem) = &a.out {
        for (ext, text) in [("json", serde_json::to_string_pretty(&ranked)?), ("md", table.clone())] {
            let path = stem.with_extension(ext);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    match a.ids {
        Some(n) => {
            let ids: Vec<&str> = ranked.iter().take(n).map(|q| q.question.as_str()).collect();
            println!("{}", ids.join(","));
        }
        None => print!("{table}"),
    }
    Ok(())
}

fn pairs(a: &PairsArgs) -> anyhow::Result<()> {
    let loaded = jsonl::read::<Item>(&a.input, Item::validate)?;
    eprintln!("{}: {}", a.input.display(), loaded.summary());
    let (mut made, mut kept, mut dropped) = (0, 0, 0);
    let out: Vec<ChatItem> = loaded
        .rows
        .iter()
        .filter_map(|item| match item {
            Item::Choice(c) => {
                made += 1;
                Some(cuma::data::pairs::choice_pair(c, a.seed))
            }
            Item::Chat(c) if c.rejected.is_some() => {
                kept += 1;
                Some(c.clone())
            }
            Item::Chat(_) => {
                dropped += 1;
                None
            }
        })
        .collect();
    if out.is_empty() {
        anyhow::bail!("{}: no choice item or pair to write", a.input.display());
    }
    jsonl::write(&a.out, &out)?;
    eprintln!(
        "wrote {} pairs to {} ({made} from choice items, {kept} pairs passed through, {dropped} chat items without `rejected` left out)",
        out.len(),
        a.out.display()
    );
    Ok(())
}

/// Writes the SFT items and pairs of a conversation source into `dir`.
fn write_conversations(dir: &std::path::Path, c: &cuma::data::dialogue::Converted) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    jsonl::write(&dir.join("sft.jsonl"), &c.sft)?;
    jsonl::write(&dir.join("pairs.jsonl"), &c.pairs)?;
    eprintln!(
        "wrote {} conversations (sft.jsonl) and {} pairs (pairs.jsonl) to {}",
        c.sft.len(),
        c.pairs.len(),
        dir.display()
    );
    Ok(())
}

fn synth(a: &SynthArgs) -> anyhow::Result<()> {
    use cuma::data::synth::{clusters_csv, generate, SynthConfig};
    if a.options < 2
        || a.options > 26
        || a.clusters == 0
        || a.countries_per_cluster == 0
        || a.questions == 0
        || a.respondents_per_profile == 0
    {
        anyhow::bail!("every size must be positive, with 2..=26 options");
    }
    let cfg = SynthConfig {
        clusters: a.clusters,
        countries_per_cluster: a.countries_per_cluster,
        questions: a.questions,
        options: a.options,
        respondents_per_profile: a.respondents_per_profile,
        seed: a.seed,
    };
    let (items, truth) = generate(&cfg);
    std::fs::create_dir_all(&a.out_dir).with_context(|| format!("creating {}", a.out_dir.display()))?;
    jsonl::write(&a.out_dir.join("items.jsonl"), &items)?;
    std::fs::write(a.out_dir.join("truth.json"), serde_json::to_string_pretty(&truth)?)?;
    std::fs::write(a.out_dir.join("clusters.csv"), clusters_csv(&truth))?;
    eprintln!(
        "wrote {} items, truth.json and clusters.csv to {}",
        items.len(),
        a.out_dir.display()
    );
    Ok(())
}

fn convert(a: &ConvertArgs) -> anyhow::Result<()> {
    if let Some(dir) = &a.prism {
        let (c, report) = cuma::data::prism::read(dir).with_context(|| format!("reading {}", dir.display()))?;
        eprintln!("{}: {}", dir.display(), report.summary());
        return write_conversations(&a.out, &c);
    }
    if let Some(file) = &a.ca {
        let (c, report) =
            cuma::data::community_alignment::read(file).with_context(|| format!("reading {}", file.display()))?;
        eprintln!("{}: {}", file.display(), report.summary());
        write_conversations(&a.out, &c.conversations)?;
        jsonl::write(&a.out.join("discrimination.jsonl"), &c.discrimination)?;
        eprintln!(
            "wrote {} discrimination items (discrimination.jsonl)",
            c.discrimination.len()
        );
        return Ok(());
    }
    let (mut items, report) = match (&a.wvs, &a.wvb, &a.popquorn) {
        (Some(dir), _, _) => {
            let source = WvsSource::open(dir).with_context(|| format!("reading {}", dir.display()))?;
            source.items(a.questions.as_deref())?
        }
        (None, Some(dir), _) => {
            let meta = a.meta.as_deref().unwrap_or(dir);
            cuma::data::wvb::items(dir, &a.split, meta)
                .with_context(|| format!("reading {} (split {})", dir.display(), a.split))?
        }
        (None, None, Some(path)) => {
            let opts = cuma::data::popquorn::PopquornOptions {
                ratings: !a.no_ratings,
                pairs_per_annotator: a.pairs_per_annotator,
                seed: a.seed,
            };
            cuma::data::popquorn::items(path, opts).with_context(|| format!("reading {}", path.display()))?
        }
        (None, None, None) => anyhow::bail!("pass one of --wvs, --wvb, --popquorn, --prism, --ca"),
    };
    if let Some(only) = &a.questions {
        items.retain(|i| only.contains(&i.question_id));
    }
    jsonl::write(&a.out, &items)?;
    let respondents: std::collections::BTreeSet<&str> = items.iter().map(|i| i.respondent.as_str()).collect();
    let questions: std::collections::BTreeSet<&str> = items.iter().map(|i| i.question_id.as_str()).collect();
    eprintln!(
        "wrote {} items ({} respondents, {} questions) to {}; source: {}",
        items.len(),
        respondents.len(),
        questions.len(),
        a.out.display(),
        report.summary()
    );
    Ok(())
}

fn split_cmd(a: &SplitArgs) -> anyhow::Result<()> {
    if a.ratio == 0 {
        anyhow::bail!("--ratio must be at least 1");
    }
    let loaded = jsonl::read::<Item>(&a.input, Item::validate)?;
    eprintln!("{}: {}", a.input.display(), loaded.summary());
    std::fs::create_dir_all(&a.out_dir).with_context(|| format!("creating {}", a.out_dir.display()))?;
    let (train, test) = match a.heldout_fraction {
        None => split::by_key(loaded.rows, Item::respondent, a.ratio, a.seed),
        Some(f) => {
            let choice: Vec<ChoiceItem> = loaded
                .rows
                .into_iter()
                .map(|i| match i {
                    Item::Choice(c) => Ok(c),
                    Item::Chat(c) => Err(anyhow::anyhow!(
                        "--heldout-fraction holds out survey profiles; chat item {} is not a choice item",
                        c.id
                    )),
                })
                .collect::<anyhow::Result<_>>()?;
            if !(0.0..1.0).contains(&f) {
                anyhow::bail!("--heldout-fraction must be in [0, 1), got {f}");
            }
            let map = match &a.clusters {
                Some(p) => cuma::data::clusters::ClusterMap::from_csv(p)?,
                None => cuma::data::clusters::ClusterMap::embedded()?,
            };
            let s = split::with_heldout(choice, a.ratio, a.seed, &map, f);
            for (cluster, (held, all)) in &s.per_cluster {
                eprintln!("  {cluster:<22} {held:>4} of {all:>5} profiles held out");
            }
            if s.unclustered > 0 {
                eprintln!(
                    "warning: {} items have a country without a cluster; none of them is held out",
                    s.unclustered
                );
            }
            let mut heldout = s.heldout;
            if !a.questions.is_empty() {
                heldout.retain(|c| a.questions.contains(&c.question_id));
            }
            jsonl::write(&a.out_dir.join("heldout.jsonl"), &heldout)?;
            eprintln!("heldout {} items", heldout.len());
            let wrap = |v: Vec<ChoiceItem>| v.into_iter().map(Item::Choice).collect::<Vec<_>>();
            (wrap(s.train), wrap(s.test))
        }
    };
    let keep = |mut rows: Vec<Item>| {
        if !a.questions.is_empty() {
            rows.retain(|i| match i {
                Item::Choice(c) => a.questions.contains(&c.question_id),
                Item::Chat(_) => true,
            });
        }
        rows
    };
    let (train, test) = (keep(train), keep(test));
    jsonl::write(&a.out_dir.join("train.jsonl"), &train)?;
    jsonl::write(&a.out_dir.join("test.jsonl"), &test)?;
    eprintln!(
        "train {} items, test {} items (seed {}, {}:1 by respondent) in {}",
        train.len(),
        test.len(),
        a.seed,
        a.ratio,
        a.out_dir.display()
    );
    Ok(())
}
