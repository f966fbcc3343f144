//! `cuma eval`: metrics of a checkpoint or a baseline, printed and written as JSON + Markdown;
//! optionally the routing analysis and the seen vs held-out table.

use crate::cli::EvalArgs;
use anyhow::Context;
use cuma::data::clusters::ClusterMap;
use cuma::data::ChoiceItem;
use cuma::eval::fewshot::ShotPool;
use cuma::eval::run::{assemble, markdown, read_items, EvalMethod, EvalOptions, Evaluation, Evaluator};
use cuma::eval::tables::{AnswerTable, TableKind};
use cuma::eval::{heldout, routing};
use std::path::Path;

/// `--pairs`: how the checkpoint ranks the pairs in `--data`.
fn pairs(a: &EvalArgs, run: &Path) -> anyhow::Result<()> {
    let out = a.out.clone().unwrap_or_else(|| run.to_path_buf());
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let scratch = out.join("pairs-cache");
    let mut r = cuma::train::sft::SftRun::for_pairs(run, &a.data, &scratch, &a.device, true)
        .with_context(|| format!("preparing {} with {}", a.data.display(), run.display()))?;
    r.config.batch_size = a.batch_size.max(1);
    let m = r.pair_metrics()?;
    let path = out.join("pairs.json");
    std::fs::write(&path, serde_json::to_string_pretty(&m)?).with_context(|| format!("writing {}", path.display()))?;
    println!(
        "{} pairs ({} too long skipped): chosen more likely {:.1} %, log-prob margin {:.3}; \
         against the {:?} reference: reward accuracy {:.1} %, margin {:.4} (chosen {:.4}, rejected {:.4})",
        m.pairs,
        r.too_long,
        100.0 * m.logp_accuracy,
        m.logp_margin,
        m.reference,
        100.0 * m.rewards.accuracy,
        m.rewards.margin,
        m.rewards.chosen_reward,
        m.rewards.rejected_reward
    );
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// `--generate`: replies to the chat items of `--data`.
fn generate(a: &EvalArgs, evaluator: &Evaluator, out: &Path) -> anyhow::Result<()> {
    use cuma::data::{jsonl, Item};
    use cuma::eval::generation::{diversity, replies, GenerationOptions};
    let loaded = jsonl::read::<Item>(&a.data, Item::validate)?;
    eprintln!("{}: {}", a.data.display(), loaded.summary());
    let mut items: Vec<cuma::data::ChatItem> = loaded
        .rows
        .iter()
        .map(|i| match i {
            Item::Chat(c) => c.clone(),
            Item::Choice(c) => cuma::data::pairs::choice_pair(c, a.seed),
        })
        .collect();
    if a.max_items > 0 {
        items.truncate(a.max_items);
    }
    let opts = GenerationOptions {
        max_new_tokens: a.max_tokens,
        temperature: a.temperature,
        top_p: a.top_p,
        seed: a.seed,
        batch: a.batch_size.max(1),
    };
    let bar = indicatif::ProgressBar::new(items.len() as u64);
    let generated = replies(evaluator, &items, &opts, |done| bar.set_position(done as u64))?;
    bar.finish_and_clear();
    cuma::data::jsonl::write(&out.join("replies.jsonl"), &generated)?;
    let texts: Vec<&str> = generated.iter().map(|r| r.reply.as_str()).collect();
    let d = diversity(&texts);
    std::fs::write(out.join("generation.json"), serde_json::to_string_pretty(&d)?)?;
    println!(
        "{} replies (temperature {}, top-p {}, seed {}): distinct-2 {:.3}, word entropy {:.3}, {:.1} words on average",
        d.replies, a.temperature, a.top_p, a.seed, d.distinct_2, d.word_entropy, d.mean_words
    );
    eprintln!("wrote replies.jsonl and generation.json to {}", out.display());
    Ok(())
}

/// `--win-rate`: the replies of `--data` judged against those of `--against`.
fn win_rate(a: &EvalArgs) -> anyhow::Result<()> {
    use crate::cli::JudgeKind;
    use cuma::eval::generation::Reply;
    use cuma::eval::judge::{judge_case, Case, HttpJudge, Judge, RuleJudge, WinRate};
    let read = |p: &Path| -> anyhow::Result<Vec<Reply>> {
        Ok(cuma::data::jsonl::read::<Reply>(p, |_| Ok(()))
            .with_context(|| format!("reading replies {}", p.display()))?
            .rows)
    };
    let against_path = a
        .against
        .as_deref()
        .context("--win-rate needs --against <replies.jsonl>")?;
    let ours = read(&a.data)?;
    let theirs: std::collections::HashMap<String, Reply> =
        read(against_path)?.into_iter().map(|r| (r.id.clone(), r)).collect();
    let kind = a.judge.unwrap_or(if a.judge_url.is_some() {
        JudgeKind::Http
    } else {
        JudgeKind::Rule
    });
    let mut judge: Box<dyn Judge> = match kind {
        JudgeKind::Rule => Box::new(RuleJudge),
        JudgeKind::Http => {
            let url = a.judge_url.as_deref().context("--judge http needs --judge-url")?;
            let key = std::env::var(&a.judge_key_env).ok().filter(|k| !k.is_empty());
            Box::new(HttpJudge::new(
                url,
                &a.judge_model,
                key,
                std::time::Duration::from_secs(a.judge_timeout),
            ))
        }
    };
    let mut rng = cuma::sampling::Rng::new(a.seed);
    let (mut outcomes, mut verdicts, mut unmatched) = (Vec::new(), Vec::new(), 0);
    let bar = indicatif::ProgressBar::new(ours.len() as u64);
    for r in &ours {
        bar.inc(1);
        let Some(other) = theirs.get(&r.id) else {
            unmatched += 1;
            continue;
        };
        let case = Case {
            profile_text: &r.profile_text,
            context: &r.context,
            reply: &r.reply,
            other: &other.reply,
            reference: r.reference.as_deref(),
        };
        let (outcome, why) = judge_case(judge.as_mut(), &case, &mut rng, a.retries);
        outcomes.push(outcome);
        verdicts.push(serde_json::json!({"id": r.id, "outcome": outcome, "error": why}));
    }
    bar.finish_and_clear();
    let w = WinRate::of(&outcomes);
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| a.data.parent().unwrap_or(Path::new(".")).to_path_buf());
    std::fs::create_dir_all(&out)?;
    let report = serde_json::json!({"judge": format!("{kind:?}").to_lowercase(), "against": against_path, "unmatched": unmatched, "result": w});
    std::fs::write(out.join("winrate.json"), serde_json::to_string_pretty(&report)?)?;
    cuma::data::jsonl::write(&out.join("verdicts.jsonl"), &verdicts)?;
    let rate = w
        .win_rate
        .map_or("n/a (nothing judged)".to_string(), |r| format!("{:.1} %", 100.0 * r));
    println!(
        "win rate {rate}: {} wins, {} ties, {} losses; {} failed and {} not judgeable (left out); {unmatched} replies without a match",
        w.wins, w.ties, w.losses, w.failed, w.not_judgeable
    );
    eprintln!("wrote winrate.json and verdicts.jsonl to {}", out.display());
    Ok(())
}

/// Every scored test item: id, respondent, question, groups, option probabilities, answer.
const PREDICTIONS_FILE: &str = "predictions.jsonl";
/// The same for the held-out profiles (`--heldout`).
const HELDOUT_PREDICTIONS_FILE: &str = "heldout_predictions.jsonl";

/// What scores the items: a model, or a count table (no model at all).
enum Scorer<'a> {
    Model(Box<Evaluator>, EvalOptions<'a>),
    Table(AnswerTable, TableKind, &'a ClusterMap),
}

impl Scorer<'_> {
    fn evaluate(&self, items: &[ChoiceItem], what: &str, routing: bool) -> anyhow::Result<Evaluation> {
        match self {
            Scorer::Model(evaluator, opts) => evaluate(evaluator, items, EvalOptions { routing, ..*opts }, what),
            Scorer::Table(table, kind, clusters) => {
                let refs: Vec<&ChoiceItem> = items.iter().collect();
                let probs = items.iter().map(|i| table.predict(i, *kind)).collect();
                let (scored, predictions, summary) = assemble(&refs, probs, Some(clusters));
                Ok(Evaluation {
                    scored,
                    predictions,
                    skipped: Vec::new(),
                    summary,
                    routing: None,
                })
            }
        }
    }
}

pub fn run(a: &EvalArgs) -> anyhow::Result<()> {
    if a.pairs {
        let run = a
            .checkpoint
            .as_deref()
            .context("--pairs needs --checkpoint <run dir>")?;
        return pairs(a, run);
    }
    if a.win_rate {
        return win_rate(a);
    }
    if a.routing && a.method != EvalMethod::Checkpoint {
        anyhow::bail!("--routing needs a trained checkpoint with routers (--method checkpoint)");
    }
    let clusters = match &a.clusters {
        Some(p) => ClusterMap::from_csv(p)?,
        None => ClusterMap::embedded()?,
    };
    let examples = |what: &str| -> anyhow::Result<Vec<ChoiceItem>> {
        let path = a
            .examples
            .as_ref()
            .with_context(|| format!("--method {what} needs --examples <answered items, e.g. train.jsonl>"))?;
        read_items(path, 0).with_context(|| format!("reading examples {}", path.display()))
    };
    let pool;
    let (scorer, name, default_out) = match a.method {
        EvalMethod::PooledTable | EvalMethod::CountryTable => {
            if a.generate {
                anyhow::bail!("--generate needs a model; the count tables only score choice items");
            }
            if !(a.pseudo_counts >= 0.0 && a.pseudo_counts.is_finite()) {
                anyhow::bail!("--pseudo-counts must be a finite number >= 0, got {}", a.pseudo_counts);
            }
            let label = if a.method == EvalMethod::PooledTable {
                "pooled-table"
            } else {
                "country-table"
            };
            let (kind, name) = match a.method {
                EvalMethod::PooledTable => (TableKind::Pooled, label.to_string()),
                _ => (
                    TableKind::Country {
                        pseudo_counts: a.pseudo_counts,
                    },
                    format!("{label} (pseudo-counts {})", a.pseudo_counts),
                ),
            };
            let table = AnswerTable::count(&examples(label)?);
            (
                Scorer::Table(table, kind, &clusters),
                name,
                std::path::PathBuf::from("."),
            )
        }
        method => {
            let device = cuma::device::parse_device(&a.device)?;
            let (evaluator, name, default_out) = match method {
                EvalMethod::Checkpoint => {
                    let given = a
                        .checkpoint
                        .as_ref()
                        .context("--method checkpoint needs --checkpoint <run dir>")?;
                    let dir = if given.join(cuma::train::checkpoint::MANIFEST_FILE).is_file() {
                        given.clone()
                    } else {
                        given.join(cuma::train::sft::CHECKPOINT_DIR)
                    };
                    let e = Evaluator::from_checkpoint(&dir, device)
                        .with_context(|| format!("loading {}", dir.display()))?;
                    let name = format!("{:?}", e.config.method.method).to_lowercase();
                    (e, name, given.clone())
                }
                m => {
                    let backbone = cuma::defaults::backbone(a.model.as_deref())?;
                    let encoder = cuma::defaults::encoder(a.encoder.as_deref())?;
                    (
                        Evaluator::baseline(&backbone, &encoder, m, device)?,
                        format!("{m:?}").to_lowercase(),
                        std::path::PathBuf::from("."),
                    )
                }
            };
            pool = match method {
                EvalMethod::Fewshot => Some(ShotPool::new(examples("fewshot")?)),
                _ => None,
            };
            let opts = EvalOptions {
                batch: a.batch_size,
                routing: a.routing,
                shots: pool.as_ref().map(|p| (p, a.shots)),
                seed: a.seed,
                strict: a.strict,
                clusters: Some(&clusters),
            };
            (Scorer::Model(Box::new(evaluator), opts), name, default_out)
        }
    };
    let out = a.out.clone().unwrap_or(default_out);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    if let (true, Scorer::Model(evaluator, _)) = (a.generate, &scorer) {
        return generate(a, evaluator, &out);
    }

    let items = read_items(&a.data, a.max_items)?;
    let seen = scorer.evaluate(&items, "evaluating", a.routing)?;
    write(
        &out,
        "eval",
        &serde_json::to_string_pretty(&seen.summary)?,
        &markdown(&name, &seen.summary),
    )?;
    cuma::data::jsonl::write(&out.join(PREDICTIONS_FILE), &seen.predictions)?;
    print!("{}", markdown(&name, &seen.summary));
    if let Some(report) = &seen.routing {
        write(
            &out,
            "routing",
            &serde_json::to_string_pretty(report)?,
            &routing::markdown(report),
        )?;
        let collapsed: Vec<&str> = report
            .routers
            .iter()
            .filter(|r| r.collapsed)
            .map(|r| r.router.as_str())
            .collect();
        println!(
            "\nrouting: {} routers, {} collapsed{}; overlap between profiles on the same question {:.3}; signatures for {} countries",
            report.routers.len(),
            collapsed.len(),
            if collapsed.is_empty() { String::new() } else { format!(" ({})", collapsed.join(", ")) },
            report.overlap,
            report.signatures.len()
        );
    }
    if let Some(path) = &a.heldout {
        let held_items = read_items(path, a.max_items)?;
        let held = scorer.evaluate(&held_items, "held-out profiles", false)?;
        cuma::data::jsonl::write(&out.join(HELDOUT_PREDICTIONS_FILE), &held.predictions)?;
        let report = heldout::compare(&seen.scored, &held.scored, &clusters);
        let table = heldout::markdown(&report);
        write(&out, "heldout", &serde_json::to_string_pretty(&report)?, &table)?;
        println!("\nseen vs held-out profiles per cultural cluster:\n{table}");
        if !report.unmapped_countries.is_empty() {
            eprintln!(
                "warning: no cluster for {} (left out of the table)",
                report.unmapped_countries.join(", ")
            );
        }
    }
    eprintln!(
        "wrote eval.json / eval.md / {PREDICTIONS_FILE}{} to {}",
        if seen.routing.is_some() {
            ", routing.json / routing.md"
        } else {
            ""
        },
        out.display()
    );
    Ok(())
}

fn evaluate(
    evaluator: &Evaluator,
    items: &[ChoiceItem],
    opts: EvalOptions<'_>,
    what: &str,
) -> anyhow::Result<Evaluation> {
    let bar = indicatif::ProgressBar::new(items.len() as u64);
    if let Ok(style) = indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ETA {eta}") {
        bar.set_style(style);
    }
    bar.set_message(what.to_string());
    let result = evaluator.evaluate(items, opts, |n| bar.inc(n as u64))?;
    bar.finish_and_clear();
    if let Some((id, why)) = result.skipped.first() {
        eprintln!("warning: {what}: skipped {} of {} items that cannot be scored (first: item {id}: {why}); --strict refuses them instead", result.skipped.len(), items.len());
    }
    Ok(result)
}

fn write(dir: &Path, stem: &str, json: &str, md: &str) -> anyhow::Result<()> {
    for (ext, text) in [("json", json), ("md", md)] {
        let path = dir.join(format!("{stem}.{ext}"));
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
