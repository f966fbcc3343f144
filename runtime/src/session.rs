//! A [`Session`]: one bundle loaded on one backend, answering requests for profiles. It renders
//! prompts exactly as training did, encodes each profile once (cached; its routers' terms too,
//! when the bundle has them as a graph), and runs the decoder graph step by step with its KV
//! cache.

use crate::decoder::{GraphDecoder, StepOutput};
use crate::engine::{self, Backend, Engine, EngineOptions};
use crate::kv_cache::HostKvCache;
use crate::text::{chat_prompt, TextTokenizer};
use crate::{Bundle, HostTensor, Profile, RuntimeError};
use cuma_model::bundle::io;
use cuma_model::serve::batching::{Batcher, Event, Sequence, SequenceId};
use cuma_model::serve::choice::{option_probabilities, ChoicePrompt};
use cuma_model::serve::generate::generate;
use cuma_model::serve::prompt;
use cuma_model::serve::{
    DecoderStep, GenerateOptions, Generation, RoutingTrace, ServeError, StepInput, Timings, TokenEvent, TokenText,
};
use cuma_model::text::Message;
use std::collections::HashMap;
use std::time::Instant;

/// How a session is set up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionOptions {
    pub engine: EngineOptions,
    /// Refuse profiles with attributes the bundle does not know (else they are dropped with a
    /// warning, see [`Session::take_warnings`]).
    pub strict_profiles: bool,
}

/// One chat request.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateRequest {
    pub profile: Profile,
    /// The conversation so far (a system turn is added unless it starts with one).
    pub messages: Vec<Message>,
}

/// The bundle's tokenizer and end-of-turn ids, as the serving core's text side.
struct BundleText<'a> {
    tokenizer: &'a TextTokenizer,
    end_of_turn: &'a [u32],
}

impl<'a> BundleText<'a> {
    fn new(tokenizer: &'a TextTokenizer, bundle: &'a Bundle) -> Self {
        Self {
            tokenizer,
            end_of_turn: &bundle.manifest.backbone.end_of_turn,
        }
    }
}

impl TokenText for BundleText<'_> {
    fn decode(&self, ids: &[u32]) -> Result<String, ServeError> {
        self.tokenizer
            .decode(ids)
            .map_err(|e| ServeError::Tokenizer(e.to_string()))
    }

    fn end_of_turn(&self) -> &[u32] {
        self.end_of_turn
    }
}

/// The answer distribution over a question's options.
#[derive(Debug, Clone, PartialEq)]
pub struct ChoiceDistribution {
    /// One probability per option, summing to 1.
    pub probabilities: Vec<f64>,
    /// Which experts every prompt token went to, when asked for.
    pub routing: Option<RoutingTrace>,
    /// Seconds spent encoding the profile (0 when cached) and running the prompt.
    pub encoder_seconds: f64,
    pub prefill_seconds: f64,
}

/// The tokenizer must encode every option letter as the id the manifest records (a tokenizer
/// edited after export would otherwise score the wrong logits).
fn check_letters(tokenizer: &TextTokenizer, m: &cuma_model::bundle::Manifest) -> Result<(), RuntimeError> {
    for (letter, &want) in m.choice.wording.letters.iter().zip(&m.choice.letter_ids) {
        let got = tokenizer.single_token(letter)?;
        if got as usize >= m.backbone.vocab {
            return Err(RuntimeError::Unsupported(format!(
                "the tokenizer maps option letter `{letter}` to token {got}, outside the vocabulary of {}",
                m.backbone.vocab
            )));
        }
        if got != want {
            return Err(RuntimeError::Unsupported(format!(
                "the tokenizer maps option letter `{letter}` to token {got}; the manifest says {want}"
            )));
        }
    }
    Ok(())
}

/// A bundle loaded for serving.
pub struct Session {
    bundle: Bundle,
    options: SessionOptions,
    decoder: GraphDecoder,
    encoder: Option<Box<dyn Engine>>,
    pub(crate) tokenizer: TextTokenizer,
    encoder_tokenizer: Option<TextTokenizer>,
    profile_cache: HashMap<String, Vec<f32>>,
    profile_cache_stats: ProfileCacheStats,
    warnings: Vec<String>,
}

/// How often [`Session::encode_profile`] found a profile vector in its cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProfileCacheStats {
    pub hits: u64,
    pub misses: u64,
}

impl Session {
    /// Loads the bundle's graphs and tokenizers on `options.engine.backend`.
    ///
    /// ```no_run
    /// use cuma_runtime::{Backend, Bundle, EngineOptions, Profile, Session, SessionOptions};
    /// let bundle = Bundle::open("bundle")?;
    /// let options = SessionOptions { engine: EngineOptions { backend: Backend::Tract, threads: None, ..Default::default() }, strict_profiles: false };
    /// let mut session = Session::new(bundle, options)?;
    /// let profile = Profile::parse("country=Thailand,age=55-64,religion=Buddhist")?;
    /// let options = ["Very important".to_string(), "Not important".to_string()];
    /// let answer = session.choice_distribution(&profile, "How important is religion in your life?", &options, false)?;
    /// println!("{:?}", answer.probabilities);
    /// # Ok::<(), cuma_runtime::RuntimeError>(())
    /// ```
    pub fn new(bundle: Bundle, options: SessionOptions) -> Result<Self, RuntimeError> {
        let m = &bundle.manifest;
        if let (Some(q), Backend::Tract) = (&m.quant, options.engine.backend) {
            return Err(RuntimeError::Unsupported(format!(
                "{}: this bundle stores int{} weights (blocked DequantizeLinear, opset {}), which tract cannot \
                 read; serve it on ONNX Runtime, or serve a bundle exported without --quant on tract",
                bundle.dir.display(),
                q.bits,
                m.opset
            )));
        }
        let model_spec = bundle.graph_spec("model")?;
        let decoder = engine::load(&bundle.graph_path("model")?, model_spec, &options.engine)?;
        // Only files the bundle lists (and `Bundle::open` verified) are opened.
        let tokenizer = |name: &str| -> Result<TextTokenizer, RuntimeError> {
            Ok(TextTokenizer::from_bytes(
                &bundle.read_text_file(name)?,
                &bundle.dir.join(name).display().to_string(),
            )?)
        };
        let backbone_tokenizer = tokenizer(&m.backbone.tokenizer)?;
        check_letters(&backbone_tokenizer, m)?;
        let (encoder, encoder_tokenizer) = match (&m.encoder, m.graphs.get("encoder")) {
            (Some(spec), Some(graph)) => (
                Some(engine::load(&bundle.file(&graph.file)?, graph, &options.engine)?),
                // Cut to the encoder's limit as training's encoder cuts (the same tokenizer call).
                Some(tokenizer(&spec.tokenizer)?.truncated(spec.max_tokens)?),
            ),
            _ => (None, None),
        };
        let terms = match m.graphs.get("profile_terms") {
            Some(graph) => Some(engine::load(&bundle.file(&graph.file)?, graph, &options.engine)?),
            None => None,
        };
        let decoder = GraphDecoder::new(decoder, terms, &bundle)?;
        Ok(Self {
            bundle,
            options,
            decoder,
            encoder,
            tokenizer: backbone_tokenizer,
            encoder_tokenizer,
            profile_cache: HashMap::new(),
            profile_cache_stats: ProfileCacheStats::default(),
            warnings: Vec::new(),
        })
    }

    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    pub fn options(&self) -> &SessionOptions {
        &self.options
    }

    /// Warnings collected since the last call (unknown profile attributes that were dropped).
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Whether the decoder's routers read a profile vector.
    pub fn reads_profile_vector(&self) -> bool {
        self.decoder.reads_profile_vector()
    }

    /// The router labels of `routing_experts`' first axis (empty without routers).
    pub fn routers(&self) -> Vec<String> {
        self.bundle
            .manifest
            .adapter
            .as_ref()
            .map(|a| a.routers.clone())
            .unwrap_or_default()
    }

    /// The profile checked against the bundle (see [`SessionOptions::strict_profiles`]).
    pub(crate) fn checked_profile(&mut self, profile: &Profile) -> Result<Profile, RuntimeError> {
        let (kept, warnings) = profile.checked(&self.bundle.manifest.profile, self.options.strict_profiles)?;
        for w in warnings {
            if !self.warnings.contains(&w) {
                self.warnings.push(w);
            }
        }
        Ok(kept)
    }

    /// The profile vector `[D]` from the encoder graph, computed once per distinct profile text.
    pub fn encode_profile(&mut self, profile: &Profile) -> Result<Vec<f32>, RuntimeError> {
        let profile = self.checked_profile(profile)?;
        let text = profile.render(&self.bundle.manifest.profile)?;
        if let Some(v) = self.profile_cache.get(&text) {
            self.profile_cache_stats.hits += 1;
            return Ok(v.clone());
        }
        self.profile_cache_stats.misses += 1;
        let (Some(encoder), Some(tok), Some(spec)) = (
            self.encoder.as_mut(),
            self.encoder_tokenizer.as_ref(),
            self.bundle.manifest.encoder.as_ref(),
        ) else {
            return Err(RuntimeError::Unsupported(
                "this bundle has no profile encoder (its method does not route on profiles)".into(),
            ));
        };
        let ids = tok.encode(&text, true)?;
        let n = ids.len();
        let ids = HostTensor::I64 {
            shape: vec![1, n],
            data: ids.iter().map(|&i| i64::from(i)).collect(),
        };
        let mask = HostTensor::I64 {
            shape: vec![1, n],
            data: vec![1; n],
        };
        let out = encoder.run(&[(io::INPUT_IDS, &ids), (io::ATTENTION_MASK, &mask)])?;
        let at = self
            .bundle
            .graph_spec("encoder")?
            .outputs
            .iter()
            .position(|o| o.name == io::EMBEDDING);
        let vector = at.and_then(|i| out.into_iter().nth(i)).and_then(|t| {
            if let HostTensor::F32 { data, .. } = t {
                Some(data)
            } else {
                None
            }
        });
        let vector = vector
            .filter(|v| v.len() == spec.dim)
            .ok_or_else(|| RuntimeError::Backend {
                graph: "encoder".into(),
                reason: format!("expected a float [1, {}] embedding", spec.dim),
            })?;
        self.profile_cache.insert(text, vector.clone());
        Ok(vector)
    }

    /// Hits and misses of the profile-vector cache since the session started.
    pub fn profile_cache_stats(&self) -> ProfileCacheStats {
        self.profile_cache_stats
    }

    /// Forgets every cached profile vector.
    pub fn clear_profile_cache(&mut self) {
        self.profile_cache.clear();
    }

    /// The chat messages for `profile` before the user's turns: the rendered profile as the system
    /// prompt when the bundle was trained that way, else the neutral system prompt.
    pub fn system_message(&mut self, profile: &Profile) -> Result<Message, RuntimeError> {
        let spec = self.bundle.manifest.profile.clone();
        let text = if spec.in_prompt {
            self.checked_profile(profile)?.render(&spec)?
        } else {
            spec.neutral_system
        };
        Ok(Message::new("system", &text))
    }

    /// Token ids of the chat prompt for `profile` and `messages` (a system turn is added unless
    /// `messages` starts with one), checked against the context length.
    pub fn prompt_ids(&mut self, profile: &Profile, messages: &[Message]) -> Result<Vec<u32>, RuntimeError> {
        if messages.is_empty() {
            return Err(RuntimeError::Input("no messages".into()));
        }
        let all = if messages[0].role == "system" {
            messages.to_vec()
        } else {
            prompt::with_system(&self.system_message(profile)?.content, messages)
        };
        let text = chat_prompt(&self.bundle.manifest.backbone, &all)?;
        let ids = self.tokenizer.encode(&text, false)?;
        let context = self.bundle.manifest.backbone.max_positions;
        if ids.len() >= context {
            return Err(RuntimeError::Input(format!(
                "the prompt is {} tokens; the model's context is {context}",
                ids.len()
            )));
        }
        Ok(ids)
    }

    /// The token ids of a multiple-choice prompt for `profile` (system turn, then `question` with
    /// its lettered `options`), after which the answer letter comes; the letters' ids are the
    /// manifest's `choice.letter_ids`.
    pub fn choice_prompt_ids(
        &mut self,
        profile: &Profile,
        question: &str,
        options: &[String],
    ) -> Result<Vec<u32>, RuntimeError> {
        let wording = self.bundle.manifest.choice.wording.clone();
        let system = self.system_message(profile)?;
        let turns = prompt::choice_messages(&wording, &system.content, &[], question, options);
        self.prompt_ids(profile, &turns)
    }

    /// Probabilities of each option of a multiple-choice question for `profile`: the softmax over
    /// the option letters' logits right after the prompt (as in evaluation).
    pub fn choice_distribution(
        &mut self,
        profile: &Profile,
        question: &str,
        options: &[String],
        trace_routing: bool,
    ) -> Result<ChoiceDistribution, RuntimeError> {
        if options.is_empty() {
            return Err(RuntimeError::Input("a question needs at least one option".into()));
        }
        let choice = &self.bundle.manifest.choice;
        if options.len() > choice.letter_ids.len() {
            return Err(RuntimeError::Input(format!(
                "{} options; at most {} can be lettered",
                options.len(),
                choice.letter_ids.len()
            )));
        }
        if question.trim().is_empty() {
            return Err(RuntimeError::Input("empty question".into()));
        }
        let letters = choice.letter_ids[..options.len()].to_vec();
        let t0 = Instant::now();
        let demographic = if self.reads_profile_vector() {
            Some(self.encode_profile(profile)?)
        } else {
            None
        };
        let encoder_seconds = t0.elapsed().as_secs_f64();
        let ids = self.choice_prompt_ids(profile, question, options)?;
        let t1 = Instant::now();
        let prompt = ChoicePrompt { ids, letters };
        let scores = option_probabilities(
            &mut self.decoder,
            std::slice::from_ref(&prompt),
            demographic.as_deref(),
            trace_routing,
        )?;
        let prefill_seconds = t1.elapsed().as_secs_f64();
        let routing = match &scores.routing {
            Some(r) => Some(RoutingTrace::from_step(
                &self.routers(),
                &r.view(1, scores.width),
                0,
                &prompt.ids,
            )?),
            None => None,
        };
        Ok(ChoiceDistribution {
            probabilities: scores.probabilities.into_iter().next().unwrap_or_default(),
            routing,
            encoder_seconds,
            prefill_seconds,
        })
    }

    /// The next-token logits `[vocab]` after `prompt_ids` (one prefill), with `demographic` `[D]`
    /// for routers that read it, and the prompt's routing when `trace_routing`.
    pub fn next_token_logits(
        &mut self,
        prompt_ids: &[u32],
        demographic: Option<&[f32]>,
        trace_routing: bool,
    ) -> Result<(Vec<f32>, Option<RoutingTrace>), RuntimeError> {
        if prompt_ids.is_empty() {
            return Err(RuntimeError::Input("an empty prompt".into()));
        }
        let out = DecoderStep::step(
            &mut self.decoder,
            StepInput {
                ids: &[prompt_ids.to_vec()],
                mask: &vec![1; prompt_ids.len()],
                profiles: demographic,
                past: None,
                routing: trace_routing,
            },
        )?;
        let routing = match &out.routing {
            Some(r) => Some(RoutingTrace::from_step(
                &self.routers(),
                &r.view(1, prompt_ids.len()),
                0,
                prompt_ids,
            )?),
            None => None,
        };
        Ok((out.last_logits, routing))
    }

    /// Generates replies for `requests` (each with its own profile), calling `on_token` for every
    /// streamed piece of text; the loop is the serving core's
    /// ([`cuma_model::serve::generate::generate`]).
    ///
    /// ```no_run
    /// use cuma_runtime::{Bundle, GenerateOptions, GenerateRequest, Profile, Session, SessionOptions};
    /// use cuma_runtime::model::text::Message;
    /// let mut session = Session::new(Bundle::open("bundle")?, SessionOptions::default())?;
    /// let request = GenerateRequest { profile: Profile::parse("country=Chile")?, messages: vec![Message::new("user", "What matters most in life?")] };
    /// let replies = session.generate(&[request], &GenerateOptions::default(), |t| print!("{}", t.text))?;
    /// # Ok::<(), cuma_runtime::RuntimeError>(())
    /// ```
    pub fn generate(
        &mut self,
        requests: &[GenerateRequest],
        options: &GenerateOptions,
        on_token: impl FnMut(TokenEvent<'_>),
    ) -> Result<Vec<Generation>, RuntimeError> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        options.validate()?;
        let mut timings = Timings::default();
        let t0 = Instant::now();
        let demographic = if self.reads_profile_vector() {
            let mut all = Vec::new();
            for r in requests {
                all.extend(self.encode_profile(&r.profile)?);
            }
            Some(all)
        } else {
            None
        };
        timings.encoder_seconds = t0.elapsed().as_secs_f64();
        let prompts: Vec<Vec<u32>> = requests
            .iter()
            .map(|r| self.prompt_ids(&r.profile, &r.messages))
            .collect::<Result<_, _>>()?;
        self.generate_ids(&prompts, demographic.as_deref(), options, timings, on_token)
    }

    /// [`Session::generate`] on prompts already tokenised, with the profile vectors `[batch * D]`
    /// when the routers read them. `timings` carries the encoder time spent by the caller.
    pub fn generate_ids(
        &mut self,
        prompts: &[Vec<u32>],
        demographic: Option<&[f32]>,
        options: &GenerateOptions,
        timings: Timings,
        on_token: impl FnMut(TokenEvent<'_>),
    ) -> Result<Vec<Generation>, RuntimeError> {
        generate(
            &mut self.decoder,
            &BundleText::new(&self.tokenizer, &self.bundle),
            prompts,
            demographic,
            options,
            timings,
            on_token,
        )
    }

    /// Starts prefilling `sequences` in a continuous batch (see
    /// [`cuma_model::serve::batching`]); returns the ones refused, with why.
    pub fn admit(
        &mut self,
        batcher: &mut Batcher<HostKvCache>,
        sequences: Vec<Sequence>,
    ) -> Vec<(SequenceId, RuntimeError)> {
        batcher
            .admit(&self.decoder, sequences)
            .into_iter()
            .map(|(id, e)| (id, e.into()))
            .collect()
    }

    /// One step of a continuous batch on this session's decoder: a prefill chunk of the
    /// newcomers and a decode step of the running sequences.
    pub fn batch_step(&mut self, batcher: &mut Batcher<HostKvCache>) -> Result<Vec<Event>, RuntimeError> {
        batcher.step(&mut self.decoder, &BundleText::new(&self.tokenizer, &self.bundle))
    }

    /// One decoder call (the low-level step under generation; public for benchmarks and custom
    /// decoding loops): `rows` (equal length) of new tokens, the 0/1 `mask` `[batch, past + seq]`
    /// (row-major), the profile vectors `[batch * D]` and the past (None: empty).
    pub fn step(
        &mut self,
        rows: &[Vec<i64>],
        mask: &[i64],
        demographic: Option<&[f32]>,
        past: Option<&[HostTensor]>,
    ) -> Result<StepOutput, RuntimeError> {
        self.decoder.run(rows, mask, demographic, past)
    }
}
