//! Command-line interface definition (clap derive). Dispatch lives in `main.rs`, work in `commands/`.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "cuma",
    version,
    about = "Culturally pluralistic LLM alignment: CuMA mixtures of LoRA experts on real models",
    long_about = "cuma keeps an LLM frozen and adds LoRA experts routed by both the token and an embedding of the \
user's demographic profile.\n\nWithout --model / --encoder, commands use the embedded defaults: \
SmolLM2-135M-Instruct (GGUF Q4_1) and all-MiniLM-L6-v2, installed by `make setup`. \
Override with CUMA_BACKBONE / CUMA_ENCODER."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Describe a model: architecture, sizes, parameter count, dtype, tokenizer, chat template.
    Info(InfoArgs),
    /// Chat with a backbone: renders the model's chat template and streams the reply.
    Generate(GenerateArgs),
    /// Embed a text (e.g. a demographic profile) with a sentence encoder.
    Embed(EmbedArgs),
    /// Train adapters (CuMA or a baseline): SFT on survey answers or conversations, then DPO on
    /// preference pairs (--stage dpo --init <sft run>).
    Train(Box<TrainArgs>),
    /// Evaluate a checkpoint (or the bare backbone) on multiple-choice items: accuracy, macro-F1,
    /// EMD (argmax, prob, per country), entropy; printed, and written as JSON and Markdown.
    Eval(EvalArgs),
    /// Draw the routing topology of a run: every country's routing signature (written by
    /// `cuma eval --routing`) in 2-D by t-SNE (or PCA), coloured by cultural cluster.
    Topology(TopologyArgs),
    /// Draw learning curves: a metric of each run's snapshot evaluations (RUN/curve/STEP/eval.json,
    /// from `scripts/experiment.sh`) against steps, with baselines as reference lines.
    Curve(CurveArgs),
    /// Compare evaluated runs with uncertainty: bootstrap over respondents of their
    /// predictions.jsonl (and heldout_predictions.jsonl), 95 % intervals of every metric and
    /// paired differences against a reference run on the same items.
    Compare(CompareArgs),
    /// Export a checkpoint (backbone + routers + LoRA experts) or a bare backbone to ONNX
    /// (standard operators, opset 17; runs in ONNX Runtime and tract).
    Export(ExportArgs),
    /// Survey data: convert raw sources to cuma's JSONL, split by respondent.
    #[command(subcommand)]
    Data(DataCommand),
    /// Speed at a model's shape with random weights (no checkpoint needed): SFT steps (tokens/s,
    /// model FLOP utilisation) or decoding (tokens/s, first-token latency).
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// SFT steps on one fixed batch of random tokens (answer = last token), through the real
    /// training loop: loss per step, tokens/s over the timed steps, MFU when --peak-tflops is given.
    Train(BenchTrainArgs),
    /// Greedy decoding with the KV cache after a random prompt: first-token latency and steps/s,
    /// against the memory-bandwidth bound when --peak-bandwidth is given.
    Decode(BenchDecodeArgs),
}

#[derive(clap::Args, Debug)]
pub struct BenchTrainArgs {
    #[arg(long, value_enum, default_value = "smollm2-135m")]
    pub shape: cuma::bench::Shape,
    #[command(flatten)]
    pub method: MethodArgs,
    /// Sequences per step.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 256)]
    pub seq: usize,
    /// Untimed steps first (allocator and kernel warm-up).
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed steps.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// f32 matrix products (the default on CUDA is bf16 products with f32 masters).
    #[arg(long)]
    pub f32: bool,
    /// The device's peak dense bf16 throughput in TFLOP/s (H200: ~790), for the MFU figure.
    #[arg(long)]
    pub peak_tflops: Option<f64>,
    /// Size of the random profile vectors (MiniLM's 384).
    #[arg(long, default_value_t = 384)]
    pub profile_dim: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run directory for the steps' metrics and checkpoint (default: a temporary one).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct BenchDecodeArgs {
    #[arg(long, value_enum, default_value = "smollm2-135m")]
    pub shape: cuma::bench::Shape,
    /// Decode the bare backbone (the method flags are ignored).
    #[arg(long)]
    pub plain: bool,
    #[command(flatten)]
    pub method: MethodArgs,
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    #[arg(long, default_value_t = 128)]
    pub prompt_tokens: usize,
    #[arg(long, default_value_t = 32)]
    pub new_tokens: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// The device's memory bandwidth in bytes/s (H200: ~4.8e12), for the bound.
    #[arg(long)]
    pub peak_bandwidth: Option<f64>,
    #[arg(long, default_value_t = 384)]
    pub profile_dim: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum DataCommand {
    /// Raw World Values Survey wave 7 (CSV + codebook.json + question_metadata.json), or the
    /// WorldValuesBench TSV layout, -> canonical JSONL.
    Convert(ConvertArgs),
    /// Split canonical JSONL by respondent into train.jsonl / test.jsonl (seeded).
    Split(SplitArgs),
    /// Preference pairs from labelled choice items (WVS answers, POPQUORN ratings and
    /// comparisons): chosen = the respondent's answer letter, rejected = the option farthest
    /// from it on an ordinal scale (a seeded coin between the two ends for a middle answer), or
    /// a seeded other option on a nominal one. Pair a split's files separately (pairs keep the
    /// respondent, so the split carries over).
    Pairs(PairsArgs),
    /// Rank the questions of canonical JSONL by how much groups (countries) disagree: mean EMD
    /// between the answer histograms of every pair of groups, minus the same with the group
    /// labels shuffled (sampling noise at these group sizes).
    RankQuestions(RankQuestionsArgs),
    /// Write a synthetic "culturally sparse" benchmark with known answer distributions: clusters
    /// of countries prefer opposite ends of every scale (items.jsonl, truth.json, clusters.csv).
    Synth(SynthArgs),
}

#[derive(clap::Args, Debug)]
pub struct RankQuestionsArgs {
    /// Canonical JSONL choice items (rank on the training split, so the test split stays unseen).
    #[arg(long = "in")]
    pub input: PathBuf,
    /// The group to compare (a key of the items' groups or profile).
    #[arg(long, default_value = "country")]
    pub group: String,
    /// Groups with fewer answers to a question are left out of its spread.
    #[arg(long, default_value_t = 10)]
    pub min_answers: usize,
    /// Seed of the label shuffles.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print only the ids of the top N questions, comma-separated (for --questions).
    #[arg(long)]
    pub ids: Option<usize>,
    /// Also write the ranking as JSON and Markdown (FILE.json, FILE.md; FILE without extension).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct CurveArgs {
    /// Run directories with curve/<step>/eval.json.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// The eval.json field to draw (emd_cluster, emd_country, accuracy, ece, ...).
    #[arg(long, default_value = "emd_cluster")]
    pub metric: String,
    /// Evaluated directories (eval.json) drawn as horizontal reference lines, e.g. the count
    /// baselines.
    #[arg(long)]
    pub baseline: Vec<PathBuf>,
    /// The PNG to write.
    #[arg(long, default_value = "curve.png")]
    pub out: PathBuf,
    /// TrueType font (default: $CUMA_FONT, then DejaVu Sans / Liberation Sans).
    #[arg(long)]
    pub font: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// Run directories holding predictions.jsonl (written by `cuma eval`), or the files
    /// themselves; a run's held-out predictions are read from heldout_predictions.jsonl beside it.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// Names of the runs in the tables, comma-separated (default: each directory's name).
    #[arg(long, value_delimiter = ',')]
    pub names: Vec<String>,
    /// The run the others are compared with, by name (default: the first).
    #[arg(long)]
    pub reference: Option<String>,
    #[arg(long, default_value_t = cuma::eval::bootstrap::DEFAULT_RESAMPLES)]
    pub resamples: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Country -> cluster CSV (iso3,country,cluster); default: the map shipped with cuma.
    #[arg(long)]
    pub clusters: Option<PathBuf>,
    /// Write compare.json and compare.md into this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// Output directory.
    #[arg(long)]
    pub out_dir: PathBuf,
    #[arg(long, default_value_t = 4)]
    pub clusters: usize,
    #[arg(long, default_value_t = 2)]
    pub countries_per_cluster: usize,
    #[arg(long, default_value_t = 6)]
    pub questions: usize,
    /// Options per question (at least 2).
    #[arg(long, default_value_t = 4)]
    pub options: usize,
    /// Respondents per unique profile (country x age group x gender).
    #[arg(long, default_value_t = 3)]
    pub respondents_per_profile: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(clap::Args, Debug)]
pub struct PairsArgs {
    /// Canonical JSONL with choice items (chat items already holding `rejected` pass through).
    #[arg(long = "in")]
    pub input: PathBuf,
    /// Output JSONL of chat items with `chosen` and `rejected`.
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the per-item choices (nominal questions, middle answers).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).multiple(false)))]
pub struct ConvertArgs {
    /// Directory with WVS*.csv, codebook.json, question_metadata.json (and answer_adjustment.json).
    #[arg(long, group = "source")]
    pub wvs: Option<PathBuf>,
    /// WorldValuesBench directory with {split}_demographic_qa.tsv and {split}_value_qa.tsv.
    #[arg(long, group = "source")]
    pub wvb: Option<PathBuf>,
    /// POPQUORN: a directory with offensiveness.csv (or the file). Writes rating items and
    /// per-annotator comparison items ("which is less offensive to you?") to --out.
    #[arg(long, group = "source")]
    pub popquorn: Option<PathBuf>,
    /// POPQUORN comparison items per annotator (0: ratings only).
    #[arg(long, default_value_t = 20, requires = "popquorn")]
    pub pairs_per_annotator: usize,
    /// POPQUORN: comparison items only, no rating items.
    #[arg(long, requires = "popquorn")]
    pub no_ratings: bool,
    /// PRISM: a directory with survey.jsonl and conversations.jsonl. --out is a directory that
    /// receives sft.jsonl (one item per conversation) and pairs.jsonl (one per rejected reply).
    #[arg(long, group = "source")]
    pub prism: Option<PathBuf>,
    /// Community Alignment: the released file (CSV, or JSONL with the same columns). --out is a
    /// directory that receives sft.jsonl, pairs.jsonl and discrimination.jsonl (first-turn
    /// choice items, responses as options A to D).
    #[arg(long, group = "source")]
    pub ca: Option<PathBuf>,
    /// Seed of POPQUORN's comparison draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// WorldValuesBench split to read (train, valid, test, full).
    #[arg(long, default_value = "train", requires = "wvb")]
    pub split: String,
    /// Directory with codebook.json and question_metadata.json for --wvb (default: the --wvb directory).
    #[arg(long, requires = "wvb")]
    pub meta: Option<PathBuf>,
    /// Output JSONL file (a directory for --prism and --ca).
    #[arg(long)]
    pub out: PathBuf,
    /// Only these question ids (comma-separated, e.g. Q1,Q2,Q45).
    #[arg(long, value_delimiter = ',')]
    pub questions: Option<Vec<String>>,
}

#[derive(clap::Args, Debug)]
pub struct SplitArgs {
    /// Canonical JSONL to split.
    #[arg(long = "in")]
    pub input: PathBuf,
    /// Directory for train.jsonl and test.jsonl.
    #[arg(long)]
    pub out_dir: PathBuf,
    /// Train respondents per test respondent.
    #[arg(long, default_value_t = 10)]
    pub ratio: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Zero-shot protocol: hold out this fraction of the unique profiles (country x age x gender x
    /// education) inside each cultural cluster; their items go to heldout.jsonl.
    #[arg(long)]
    pub heldout_fraction: Option<f64>,
    /// Country -> cluster CSV (iso3,country,cluster); default: the map shipped with cuma.
    #[arg(long, requires = "heldout_fraction")]
    pub clusters: Option<PathBuf>,
    /// Keep only these questions (comma-separated ids) in the written files. The split is made
    /// on every item first, so respondents land on the same side whichever questions are kept.
    #[arg(long, value_delimiter = ',')]
    pub questions: Vec<String>,
}

#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// A GGUF file or a Hugging Face model directory (default: the embedded SmolLM2).
    pub model: Option<PathBuf>,
    /// Print the whole chat template instead of its first lines.
    #[arg(long)]
    pub full_template: bool,
}

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// A GGUF file or a Hugging Face model directory (default: the embedded SmolLM2).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// System message (default: none; the chat template may add its own).
    #[arg(long)]
    pub system: Option<String>,
    /// The user's message; repeat for a batch (generated together, replies printed in order).
    #[arg(long, required = true)]
    pub prompt: Vec<String>,
    /// Most tokens to generate per reply (cut to what the context leaves after the longest
    /// prompt).
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Stop a reply when its text contains this (cut from the reply); repeat for several.
    #[arg(long)]
    pub stop: Vec<String>,
    /// Sampling temperature; 0 is greedy decoding.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus sampling: keep the most likely tokens up to this probability mass.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Keep only the k most likely tokens before sampling (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Seed for sampling (same seed, same text).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Print prompt size and timings to stderr at the end.
    #[arg(long)]
    pub timings: bool,
}

#[derive(clap::Args, Debug)]
pub struct EmbedArgs {
    /// A sentence-encoder directory (default: the embedded all-MiniLM-L6-v2).
    #[arg(long)]
    pub encoder: Option<PathBuf>,
    /// Text to embed; repeat for several.
    #[arg(long, required = true)]
    pub text: Vec<String>,
    /// Print JSON (full vectors) instead of a summary.
    #[arg(long)]
    pub json: bool,
    /// How many leading values to show in the summary.
    #[arg(long, default_value_t = 8)]
    pub show: usize,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
}

/// `cuma train`: a TOML config and/or flags (flags win).
#[derive(clap::Args, Debug)]
#[command(
    long_about = "Train adapters on canonical JSONL multiple-choice items (see `cuma data convert`).\n\n\
Settings come from --config (TOML, the fields of cuma.json's `config`), then --preset, then flags. \
The run directory (--out) receives metrics.jsonl, profiles.safetensors and checkpoint/ \
(adapter.safetensors, optimizer.safetensors, cuma.json). Ctrl-C saves a checkpoint; --resume continues it."
)]
pub struct TrainArgs {
    /// TOML file with training settings.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// The paper's hyperparameters: rank, alpha, learning rate, effective batch 32.
    #[arg(long, value_enum)]
    pub preset: Option<cuma::train::config::Preset>,
    /// Canonical JSONL training items.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Run directory.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Backbone (default: the embedded SmolLM2).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Profile encoder (default: the embedded MiniLM).
    #[arg(long)]
    pub encoder: Option<PathBuf>,
    #[command(flatten)]
    pub method: MethodArgs,
    #[arg(long)]
    pub lr: Option<f64>,
    /// Optimiser steps.
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    #[arg(long)]
    pub grad_accum: Option<usize>,
    #[arg(long)]
    pub warmup_steps: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Also keep the adapters every N steps in snapshots/step-NNNNNN/ (a checkpoint directory
    /// without optimiser state, for `cuma eval --checkpoint`): the learning curve of a run.
    #[arg(long)]
    pub snapshot_every: Option<usize>,
    /// SFT: draw batches from windows of N batches of the shuffled order sorted by length (the
    /// window's batches then shuffled again), so rows of a batch have similar lengths and pad
    /// less; the order stays seeded, so --resume continues it. 0 (default): no bucketing.
    #[arg(long, value_name = "N")]
    pub length_buckets: Option<usize>,
    /// Use only the first N items.
    #[arg(long)]
    pub max_items: Option<usize>,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long)]
    pub device: Option<String>,
    /// Matrix products (and attention) in bf16 on any device, with fp32 master weights, norms,
    /// softmax and losses (on CUDA this is already the default). On a CPU it pays only with
    /// native bf16 instructions (AVX512-BF16 or AMX; see /proc/cpuinfo); on AVX2-only CPUs it is
    /// slower than f32.
    #[arg(long)]
    pub bf16: bool,
    /// Continue from the run directory's checkpoint.
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Start afresh in a run directory that already holds a checkpoint (it is replaced at the
    /// first save, and its metrics.jsonl restarts). Without --resume or --force, such a
    /// directory is refused.
    #[arg(long)]
    pub force: bool,
    /// Print trainable parameters (and the share of the backbone) without training.
    #[arg(long)]
    pub dry_run: bool,
    /// Write the token ids of every micro-batch the run would train on, in training order
    /// (one JSON line per micro-batch: step, rows of `ids`, `targets_from`, `profile`), and exit
    /// without training. The profile vectors are in the run directory's
    /// `profiles.safetensors`. For feeding another trainer identical batches
    /// (scripts/train_bench.sh); SFT only.
    #[arg(long, value_name = "FILE", conflicts_with = "dry_run")]
    pub dump_batches: Option<PathBuf>,
    /// sft: supervised fine-tuning (choice answers, final chat replies). dpo: preference
    /// optimisation on chosen / rejected pairs (chat items with `rejected`, from `cuma data
    /// pairs` or a loader; choice items are paired on the fly by the same rule), starting from
    /// the SFT run given by --init. DPO's learning rate defaults to the paper's 5e-6. grpo:
    /// sampled completions rewarded by --reward, from the SFT or DPO run given by --init, with
    /// router replay.
    #[arg(long, value_enum, help_heading = "Stages")]
    pub stage: Option<cuma::train::config::Stage>,
    /// DPO, GRPO: the run directory to start from. Its method, adapters, profile settings,
    /// backbone and encoder carry over (a backbone other than the one it was trained on is
    /// refused); method flags are ignored.
    #[arg(long, help_heading = "Stages")]
    pub init: Option<PathBuf>,
    /// DPO, GRPO: the frozen reference - the --init run itself (standard DPO), or the bare
    /// backbone without adapters (the reference code's choice). GRPO measures its KL against it.
    #[arg(long, value_enum, help_heading = "Stages")]
    pub reference: Option<cuma::train::dpo::ReferenceModel>,
    /// DPO: beta, the strength of the implicit KL penalty (default 0.1).
    #[arg(long, help_heading = "Stages")]
    pub beta: Option<f64>,
    /// DPO: label smoothing, the assumed share of flipped preferences (default 0).
    #[arg(long, help_heading = "Stages")]
    pub label_smoothing: Option<f64>,
    /// DPO: weight of the routers' balance loss (default 0.001; 0 turns it off).
    #[arg(long, help_heading = "Stages")]
    pub dpo_balance: Option<f64>,
    /// GRPO: completions sampled per prompt (G, default 8); --batch-size counts prompts.
    #[arg(long, help_heading = "GRPO")]
    pub group_size: Option<usize>,
    /// GRPO: sampling temperature (default 1.0; the ratio's log-probs use the same).
    #[arg(long, help_heading = "GRPO")]
    pub temperature: Option<f64>,
    /// GRPO: nucleus sampling (default 1.0).
    #[arg(long, help_heading = "GRPO")]
    pub top_p: Option<f64>,
    /// GRPO: the most tokens per completion (default 16).
    #[arg(long, help_heading = "GRPO")]
    pub max_completion: Option<usize>,
    /// GRPO: clipping range of the ratio (default 0.2).
    #[arg(long, help_heading = "GRPO")]
    pub epsilon: Option<f64>,
    /// GRPO: weight of the k3 KL to the reference (default 0, as TRL; the KL is logged anyway).
    #[arg(long, help_heading = "GRPO")]
    pub kl_beta: Option<f64>,
    /// GRPO: choice (the sampled answer letter against the survey; no judge) or judge (a
    /// pairwise judge against the base model's greedy reply: win 1, tie 0.5, loss 0).
    #[arg(long, value_enum, help_heading = "GRPO")]
    pub reward: Option<cuma::train::grpo::RewardKind>,
    /// GRPO, choice reward: respondent (1 for the respondent's own answer) or group (the share
    /// of the respondent's group in the training data that chose the sampled option).
    #[arg(long, value_enum, help_heading = "GRPO")]
    pub reward_target: Option<cuma::train::grpo::RewardTarget>,
    /// GRPO: the attributes that make a group for --reward-target group (default: country).
    #[arg(long, value_delimiter = ',', help_heading = "GRPO")]
    pub group_by: Option<Vec<String>>,
    /// GRPO: replay the sampler's expert choices in the training forward (default on).
    #[arg(long, value_enum, help_heading = "GRPO")]
    pub router_replay: Option<Switch>,
    /// GRPO, judge reward: an OpenAI-compatible base URL (default: the offline rule judge).
    #[arg(long, help_heading = "GRPO")]
    pub judge_url: Option<String>,
    #[arg(long, help_heading = "GRPO")]
    pub judge_model: Option<String>,
    /// GRPO: weight of the routers' balance loss (default 0.001).
    #[arg(long, help_heading = "GRPO")]
    pub grpo_balance: Option<f64>,
}

/// An on / off flag value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Switch {
    On,
    Off,
}

/// `*dst = src` when the flag was given.
pub fn set<T: Clone>(dst: &mut T, src: &Option<T>) {
    if let Some(v) = src {
        *dst = v.clone();
    }
}

/// The adapter method and its settings, as `cuma train` and `cuma bench` take them.
#[derive(clap::Args, Debug, Clone)]
pub struct MethodArgs {
    #[arg(long, value_enum)]
    pub method: Option<cuma_model::config::Method>,
    /// Experts per adapted projection (E).
    #[arg(long)]
    pub experts: Option<usize>,
    /// Experts per token (k).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// LoRA rank (r).
    #[arg(long)]
    pub rank: Option<usize>,
    /// LoRA alpha (the update is scaled by alpha / r).
    #[arg(long)]
    pub alpha: Option<f64>,
    #[arg(long, value_enum)]
    pub gate: Option<cuma_model::config::GateMode>,
    /// Projections to adapt (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub targets: Option<Vec<cuma_model::config::Target>>,
    #[arg(long, value_enum)]
    pub router_layout: Option<cuma_model::config::RouterLayout>,
    #[arg(long, value_enum)]
    pub expert_layout: Option<cuma_model::config::ExpertLayout>,
    /// Ablation: routers see the token only (D = 0).
    #[arg(long)]
    pub no_demographics: bool,
    /// Ablation: no load-balancing loss.
    #[arg(long)]
    pub no_balance: bool,
    /// Ablation: keep the profile out of the system prompt.
    #[arg(long)]
    pub no_profile_prompt: bool,
}

impl MethodArgs {
    /// Whether any method flag was given.
    pub fn any_given(&self) -> bool {
        self.method.is_some()
            || self.experts.is_some()
            || self.top_k.is_some()
            || self.rank.is_some()
            || self.alpha.is_some()
            || self.gate.is_some()
            || self.targets.is_some()
            || self.router_layout.is_some()
            || self.expert_layout.is_some()
            || self.no_demographics
            || self.no_balance
            || self.no_profile_prompt
    }

    /// These flags over `m` (a flag left out keeps `m`'s value; `--rank` without `--alpha` sets
    /// alpha to 2r).
    pub fn apply(&self, m: &mut cuma_model::config::MethodConfig) {
        set(&mut m.method, &self.method);
        set(&mut m.experts, &self.experts);
        set(&mut m.top_k, &self.top_k);
        if let Some(r) = self.rank {
            m.rank = r;
            if self.alpha.is_none() {
                m.alpha = 2.0 * r as f64;
            }
        }
        set(&mut m.alpha, &self.alpha);
        set(&mut m.gate, &self.gate);
        set(&mut m.router_layout, &self.router_layout);
        set(&mut m.expert_layout, &self.expert_layout);
        if let Some(t) = &self.targets {
            m.targets = t.iter().copied().collect();
        }
        m.profile_in_router &= !self.no_demographics;
        m.balance &= !self.no_balance;
        m.profile_in_prompt &= !self.no_profile_prompt;
    }
}

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// A run directory (or its checkpoint/ directory); required for --method checkpoint.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Canonical JSONL items to evaluate on.
    #[arg(long)]
    pub data: PathBuf,
    /// checkpoint (default), or an inference-time baseline on the bare backbone.
    #[arg(long, value_enum, default_value = "checkpoint")]
    pub method: cuma::eval::run::EvalMethod,
    /// Backbone for baselines (default: the embedded SmolLM2).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Encoder for baselines (default: the embedded MiniLM).
    #[arg(long)]
    pub encoder: Option<PathBuf>,
    /// Evaluate only the first N items.
    #[arg(long, default_value_t = 0)]
    pub max_items: usize,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    /// Where to write eval.json and eval.md (default: the run directory, or the current one).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Zero-shot protocol: items of profiles held out of training (`heldout.jsonl` from `cuma data
    /// split --heldout-fraction`); reports seen (`--data`) vs held-out accuracy and emd_country per
    /// cultural cluster and the macro gap (heldout.json, heldout.md).
    #[arg(long)]
    pub heldout: Option<PathBuf>,
    /// Country -> cluster CSV (iso3,country,cluster) for emd_cluster and --heldout; default: the
    /// map shipped with cuma.
    #[arg(long)]
    pub clusters: Option<PathBuf>,
    /// Record every router's decisions: expert load per router (collapsed routers flagged),
    /// routing overlap between profiles on the same question, per-country routing signatures
    /// (routing.json, routing.md; input of `cuma topology`).
    #[arg(long)]
    pub routing: bool,
    /// Answered items to draw few-shot examples from (for --method fewshot), or to count
    /// answers in (for --method pooled-table / country-table), e.g. train.jsonl.
    #[arg(long)]
    pub examples: Option<PathBuf>,
    /// --method country-table: pseudo-counts of the pooled distribution mixed into each
    /// country's counts (0: the raw per-country table).
    #[arg(long, default_value_t = 0.0)]
    pub pseudo_counts: f64,
    /// Few-shot examples per question (same country, same question first).
    #[arg(long, default_value_t = cuma::eval::fewshot::DEFAULT_SHOTS)]
    pub shots: usize,
    /// Seed of the few-shot example choice, the sampling of --generate and the reply order of
    /// --win-rate.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// auto, cpu, cuda or cuda:N.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Write replies to the chat items of --data (the final reply, if any, is kept as the
    /// reference; choice items are turned into their preference pair's prompt first), with the
    /// profile as the run renders it: replies.jsonl, plus Distinct-2 and word entropy in
    /// generation.json. Works with a checkpoint and with --method vanilla / persona.
    #[arg(long, conflicts_with_all = ["pairs", "win_rate"], help_heading = "Generation")]
    pub generate: bool,
    #[arg(long, default_value_t = 128, help_heading = "Generation")]
    pub max_tokens: usize,
    /// Sampling temperature of --generate (the paper's 0.7; 0 is greedy).
    #[arg(long, default_value_t = 0.7, help_heading = "Generation")]
    pub temperature: f64,
    #[arg(long, default_value_t = 0.9, help_heading = "Generation")]
    pub top_p: f64,
    /// Judge --data (replies.jsonl of the model under test) against --against (another run's
    /// replies.jsonl, matched by item id): win rate = wins / (wins + ties + losses), failures and
    /// unjudgeable items counted and left out. Writes winrate.json and verdicts.jsonl.
    #[arg(long, requires = "against", help_heading = "Win rate")]
    pub win_rate: bool,
    #[arg(long, help_heading = "Win rate")]
    pub against: Option<PathBuf>,
    /// rule: offline, judges only replies whose right answer is a known option letter (pairs
    /// made from survey answers): the reply opening with the respondent's letter wins. http: an
    /// OpenAI-compatible endpoint (--judge-url) prompted with the demographic-aware rubric; it can
    /// judge any reply. Default: http when --judge-url is given, else rule.
    #[arg(long, value_enum, help_heading = "Win rate")]
    pub judge: Option<JudgeKind>,
    /// Base URL of the judge, e.g. http://127.0.0.1:8000/v1 (`/chat/completions` is appended).
    #[arg(long, help_heading = "Win rate")]
    pub judge_url: Option<String>,
    #[arg(long, default_value = "judge", help_heading = "Win rate")]
    pub judge_model: String,
    /// Environment variable holding the judge's API key (sent as a bearer token when set).
    #[arg(long, default_value = "OPENAI_API_KEY", help_heading = "Win rate")]
    pub judge_key_env: String,
    /// Extra attempts after a failed judge request.
    #[arg(long, default_value_t = 2, help_heading = "Win rate")]
    pub retries: usize,
    /// Seconds a judge request may take.
    #[arg(long, default_value_t = 120, help_heading = "Win rate")]
    pub judge_timeout: u64,
    /// Refuse the whole evaluation at an item that cannot be scored (a prompt longer than the
    /// model's context); by default such items are skipped and counted.
    #[arg(long)]
    pub strict: bool,
    /// --data holds preference pairs (from `cuma data pairs` or a loader; choice items are
    /// paired by the same rule): report how the checkpoint ranks chosen against rejected -
    /// reference-free (share of pairs whose chosen reply is more likely, mean log-prob margin)
    /// and by implicit reward against the run's DPO reference (for an SFT run: the bare
    /// backbone). Writes pairs.json.
    #[arg(long, requires = "checkpoint")]
    pub pairs: bool,
}

/// Which judge `cuma eval --win-rate` uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JudgeKind {
    Rule,
    Http,
}

#[derive(clap::Args, Debug)]
pub struct TopologyArgs {
    /// A run directory evaluated with `cuma eval --routing` (or its routing.json).
    pub run: PathBuf,
    /// The PNG to write.
    #[arg(long, default_value = "topology.png")]
    pub out: PathBuf,
    /// Project with PCA instead of t-SNE.
    #[arg(long)]
    pub pca: bool,
    /// t-SNE perplexity (lowered to (countries - 1) / 3 when there are few countries).
    #[arg(long, default_value_t = 30.0)]
    pub perplexity: f64,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Signature per country: `routers` concatenates every router's mean gate vector; `mean`
    /// averages them over routers into one E-vector (the spec's wording; expert indices of
    /// different routers are unrelated, so this loses most of the structure).
    #[arg(long, value_enum, default_value = "routers")]
    pub signature: SignatureKind,
    /// Country -> cluster CSV (iso3,country,cluster); default: the map shipped with cuma.
    #[arg(long)]
    pub clusters: Option<PathBuf>,
    /// TrueType font for the labels (default: $CUMA_FONT, then DejaVu Sans / Liberation Sans).
    #[arg(long)]
    pub font: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SignatureKind {
    Routers,
    Mean,
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// A run directory or checkpoint (exports the backbone with its adapters), or a bare model
    /// (GGUF file or Hugging Face directory). `--onnx` alone, or no `--onnx`, exports the
    /// embedded SmolLM2.
    #[arg(long = "onnx", value_name = "CHECKPOINT_OR_MODEL", num_args = 0..=1)]
    pub onnx: Option<Option<PathBuf>>,
    /// Bundle directory to write.
    #[arg(long)]
    pub out: PathBuf,
    /// How weights are stored: f32, or f16 (half the size; cast to f32 inside the graph).
    /// With --quant, this is how the weights that stay unquantized are stored.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: ExportDtype,
    /// Store the backbone's projection and lm-head weights block-quantized (blocks of 32 inputs
    /// with one float32 scale each), read back by the standard `DequantizeLinear` (opset 21),
    /// which ONNX Runtime fuses with the following `MatMul` into its `MatMulNBits` kernel.
    /// Routers, experts, norms and the embedding table stay at --dtype. GGUF blocks come through
    /// exactly: Q4_0 as uint4 with zero point 8, Q4_1 as uint4 plus its per-block minima (added
    /// by one small extra product), both also in an int8 export; Q8_0 as int8 in an int8 export
    /// and at --dtype in an int4 one (ONNX Runtime's 8-bit kernel is slow without
    /// --int8-activations). Float weights are rounded to the nearest of 2^bits levels per block.
    /// tract cannot read these graphs (blocked and 4-bit DequantizeLinear): serve it a bundle
    /// exported without --quant (--dtype f16 halves it).
    #[arg(long, value_enum)]
    pub quant: Option<ExportQuant>,
    /// The backbone to export a checkpoint onto (default: the one it recorded; must hash the same).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Overwrite an existing bundle.
    #[arg(long)]
    pub force: bool,
    /// Fold a plain LoRA checkpoint's update into the backbone weights (W + alpha/r B A): the
    /// bundle runs at the bare backbone's speed.
    #[arg(long)]
    pub merge: bool,
    /// Keep the routers' profile half `W_d d + b` inside the decoder, which then takes the
    /// profile vector (`demographic`) and recomputes it at every step. By default it is a graph
    /// of its own, `profile_terms.onnx`, which the runtime runs once per profile and whose output
    /// the decoder takes as `profile_terms` (faster decoding, same numbers).
    #[arg(long)]
    pub no_profile_terms: bool,
    /// Put a graph's weights in an external data file (`model.onnx.data`) once they exceed this
    /// many bytes (protobuf files cannot exceed 2 GiB). Default: 1.8 GB, or 64 MiB with --quant
    /// (ONNX Runtime maps external data instead of copying it: less memory at load).
    #[arg(long)]
    pub external_data_above: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportDtype {
    F32,
    F16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportQuant {
    Int4,
    Int8,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export_args(argv: &[&str]) -> ExportArgs {
        match Cli::try_parse_from(argv).expect("parses").command {
            Command::Export(a) => a,
            other => panic!("not export: {other:?}"),
        }
    }

    #[test]
    fn onnx_without_a_value_means_the_default_model() {
        let bare = export_args(&["cuma", "export", "--onnx", "--out", "b"]);
        assert_eq!(bare.onnx, Some(None));
        assert_eq!(bare.out, PathBuf::from("b"));
        let given = export_args(&["cuma", "export", "--onnx", "run", "--out", "b"]);
        assert_eq!(given.onnx, Some(Some(PathBuf::from("run"))));
        assert_eq!(export_args(&["cuma", "export", "--out", "b"]).onnx, None);
    }
}
