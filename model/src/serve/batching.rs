//! Continuous batching: sequences join the running decode batch at step boundaries and leave it
//! when they finish, each with its own options, seed and profile vector. A server feeds a
//! [`Batcher`] with [`Sequence`]s and calls [`Batcher::step`] in a loop; every call runs at most
//! one prefill chunk of the newcomers and one decode step of the running sequences, so a long
//! newcomer holds the running ones back by one chunk per step, never by its whole prompt.
//!
//! The KV cache stays one batch (`[rows, kv heads, positions, head dim]` per layer) so every step
//! is one decoder call. Rows are left-aligned by padding: a newcomer's cache and the running one
//! are padded at the front to the same number of positions before their rows are joined, a
//! finished row is dropped, and front positions that every remaining row masks are cut. Padding is
//! masked and positions are counted over the mask, so a sequence's logits do not depend on its
//! batch-mates (as in [`super::generate`]); it samples with its own seed, so a request's reply is
//! the one it gets served alone.
//!
//! Per sequence, the context rule of [`super`] applies to its own length: the prompt must be below
//! the context, and it may generate `min(max_new_tokens, context - prompt)` tokens.

use super::generate::{Reply, Timings};
use super::padding::left_pad;
use super::{check_logits, DecoderStep, GenerateOptions, Generation, ServeError, StepInput, TokenText};
use std::time::Instant;

/// A KV cache whose rows can be joined, dropped and re-aligned (the host-side operations
/// continuous batching needs). Positions are the cache's third axis.
pub trait KvCache: Sized {
    /// Cached positions.
    fn positions(&self) -> usize;
    /// Keeps rows `rows`, in that order.
    fn select_rows(self, rows: &[usize]) -> Result<Self, ServeError>;
    /// Adds `n` zero (masked) positions before the first cached one.
    fn pad_front(self, n: usize) -> Result<Self, ServeError>;
    /// Drops the first `n` positions.
    fn drop_front(self, n: usize) -> Result<Self, ServeError>;
    /// `self`'s rows followed by `other`'s (both with the same positions).
    fn append_rows(self, other: Self) -> Result<Self, ServeError>;
}

/// Identifies a sequence to its owner.
pub type SequenceId = u64;

/// A request to decode: prompt ids, its profile vector (for routers that read one) and options.
#[derive(Debug, Clone)]
pub struct Sequence {
    pub id: SequenceId,
    pub prompt: Vec<u32>,
    /// `[D]`, when the decoder's routers read a profile.
    pub profile: Option<Vec<f32>>,
    pub options: GenerateOptions,
}

/// What a step produced for one sequence.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Text that became safe to stream (the first one also marks the first token).
    Token { id: SequenceId, token: u32, text: String },
    /// The sequence ended; its whole result.
    Done {
        id: SequenceId,
        generation: Box<Generation>,
    },
}

/// A running sequence: its reply so far, the token sampled but not fed yet, and its budget.
struct Running {
    id: SequenceId,
    prompt_tokens: usize,
    reply: Reply,
    options: GenerateOptions,
    profile: Option<Vec<f32>>,
    /// The last sampled token, fed at the next decode step.
    pending: u32,
    budget: usize,
    timings: Timings,
    /// Cancelled while its group was prefilling: dropped, unreported, when the group finishes.
    cancelled: bool,
}

/// Newcomers being prefilled together, one chunk of their left-padded prompts per step.
struct Prefill<C> {
    rows: Vec<Running>,
    ids: Vec<Vec<u32>>,
    mask: Vec<i64>,
    width: usize,
    done: usize,
    cache: Option<C>,
    started: Instant,
}

/// Continuous batching state: the running batch (one cache), and the newcomers being prefilled.
pub struct Batcher<C> {
    running: Vec<Running>,
    cache: Option<C>,
    /// `[running, width]` row-major 0/1, matching the cache's positions.
    mask: Vec<i64>,
    width: usize,
    prefill: Option<Prefill<C>>,
    /// Most prompt positions one prefill call runs.
    prefill_chunk: usize,
}

/// Counts of a batcher's sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Occupancy {
    pub running: usize,
    pub prefilling: usize,
}

impl<C: KvCache> Batcher<C> {
    /// An empty batcher that prefills at most `prefill_chunk` prompt positions per step.
    pub fn new(prefill_chunk: usize) -> Self {
        Self {
            running: Vec::new(),
            cache: None,
            mask: Vec::new(),
            width: 0,
            prefill: None,
            prefill_chunk: prefill_chunk.max(1),
        }
    }

    pub fn occupancy(&self) -> Occupancy {
        Occupancy {
            running: self.running.len(),
            prefilling: self.prefill.as_ref().map_or(0, |p| p.rows.len()),
        }
    }

    /// Whether nothing is running or being prefilled.
    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.prefill.is_none()
    }

    /// Whether [`Batcher::admit`] would take newcomers now (one prefill group at a time).
    pub fn can_admit(&self) -> bool {
        self.prefill.is_none()
    }

    /// Starts prefilling `sequences` together. Each is checked first (options, an empty or
    /// over-long prompt, a missing profile); the ones refused come back with their error, and the
    /// others are admitted. Call only when [`Batcher::can_admit`].
    pub fn admit<S>(&mut self, model: &S, sequences: Vec<Sequence>) -> Vec<(SequenceId, ServeError)>
    where
        S: DecoderStep<Cache = C>,
    {
        let mut refused = Vec::new();
        let mut rows = Vec::new();
        let mut prompts = Vec::new();
        let routers = model.routers();
        for s in sequences {
            let context = model.context();
            let problem = s.options.validate().err().or_else(|| {
                if s.prompt.is_empty() {
                    Some(ServeError::Input("an empty prompt".into()))
                } else if s.options.max_new_tokens == 0 {
                    Some(ServeError::Input("max_new_tokens must be at least 1".into()))
                } else if s.prompt.len() >= context {
                    Some(ServeError::Input(format!(
                        "the prompt is {} tokens; the model's context is {context}",
                        s.prompt.len()
                    )))
                } else {
                    None
                }
            });
            if let Some(e) = problem {
                refused.push((s.id, e));
                continue;
            }
            let trace = s.options.trace_routing.then(|| routers.clone());
            rows.push(Running {
                id: s.id,
                prompt_tokens: s.prompt.len(),
                reply: Reply::new(s.options.sampling, trace),
                budget: s.options.max_new_tokens.min(context - s.prompt.len()),
                options: s.options,
                profile: s.profile,
                pending: 0,
                timings: Timings::default(),
                cancelled: false,
            });
            prompts.push(s.prompt);
        }
        if rows.is_empty() {
            return refused;
        }
        let padded = left_pad(&prompts, 0);
        self.prefill = Some(Prefill {
            rows,
            ids: padded.ids,
            mask: padded.mask,
            width: padded.width,
            done: 0,
            cache: None,
            started: Instant::now(),
        });
        refused
    }

    /// Drops sequence `id` wherever it is (a client that went away); its result is not reported.
    /// Returns whether it was there.
    pub fn cancel(&mut self, id: SequenceId) -> Result<bool, ServeError> {
        if let Some(p) = self.prefill.as_mut() {
            if let Some(row) = p.rows.iter_mut().find(|r| r.id == id && !r.cancelled) {
                // Its prefill goes on with the group (the rows share calls) and it is dropped at
                // the end; the group's other rows are unaffected.
                row.cancelled = true;
                return Ok(true);
            }
        }
        let Some(at) = self.running.iter().position(|r| r.id == id) else {
            return Ok(false);
        };
        let keep: Vec<usize> = (0..self.running.len()).filter(|&i| i != at).collect();
        self.keep_running(&keep)?;
        Ok(true)
    }

    /// One scheduling step: the next prefill chunk of the newcomers (sampling their first token
    /// when their prompts are done and joining them to the batch), then one decode step of the
    /// sequences that were running. Returns what every sequence produced.
    pub fn step<S, T>(&mut self, model: &mut S, text: &T) -> Result<Vec<Event>, S::Error>
    where
        S: DecoderStep<Cache = C>,
        T: TokenText + ?Sized,
    {
        let mut events = Vec::new();
        let had_running = !self.running.is_empty();
        let joined = self.prefill_chunk(model, text, &mut events)?;
        if had_running {
            self.decode(model, text, &mut events)?;
        }
        if let Some((rows, cache, mask, width)) = joined {
            self.join(rows, cache, mask, width)?;
        }
        Ok(events)
    }

    /// Runs the next chunk of the prefill group; when its prompts are done, samples each row's
    /// first token and returns the rows still running with their cache and mask.
    #[allow(clippy::type_complexity)]
    fn prefill_chunk<S, T>(
        &mut self,
        model: &mut S,
        text: &T,
        events: &mut Vec<Event>,
    ) -> Result<Option<(Vec<Running>, C, Vec<i64>, usize)>, S::Error>
    where
        S: DecoderStep<Cache = C>,
        T: TokenText + ?Sized,
    {
        let Some(mut p) = self.prefill.take() else {
            return Ok(None);
        };
        let end = (p.done + self.prefill_chunk).min(p.width);
        let ids: Vec<Vec<u32>> = p.ids.iter().map(|row| row[p.done..end].to_vec()).collect();
        let mask: Vec<i64> = p.mask.chunks(p.width).flat_map(|row| row[..end].to_vec()).collect();
        let profiles = profiles_of(&p.rows);
        let trace = p.rows.iter().any(|r| r.reply.trace.is_some());
        let out = model.step(StepInput {
            ids: &ids,
            mask: &mask,
            profiles: profiles.as_deref(),
            past: p.cache.take(),
            routing: trace,
        })?;
        let b = p.rows.len();
        if let Some(routing) = &out.routing {
            let step = routing.view(b, end - p.done);
            for (r, row) in p.rows.iter_mut().enumerate() {
                let real_from = p.width - row.prompt_tokens;
                let from = real_from.max(p.done);
                if let (Some(trace), true) = (row.reply.trace.as_mut(), from < end) {
                    trace.append(&step, r, &p.ids[r][from..end])?;
                }
            }
        }
        p.done = end;
        if end < p.width {
            p.cache = Some(out.cache);
            self.prefill = Some(p);
            return Ok(None);
        }
        let vocab = model.vocab();
        check_logits(&out.last_logits, b, vocab)?;
        let prefill_seconds = p.started.elapsed().as_secs_f64();
        let mut keep = Vec::new();
        for (r, row) in p.rows.iter_mut().enumerate() {
            row.timings.prefill_seconds = prefill_seconds;
            if row.cancelled {
                continue;
            }
            if row.advance(&out.last_logits[r * vocab..(r + 1) * vocab], text, events)? {
                keep.push(r);
            }
        }
        let mut rows = Vec::with_capacity(keep.len());
        for (r, row) in p.rows.into_iter().enumerate() {
            if keep.contains(&r) {
                rows.push(row);
            } else if !row.cancelled {
                events.push(done(row));
            }
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let cache = out.cache.select_rows(&keep)?;
        let mask = keep
            .iter()
            .flat_map(|&r| p.mask[r * p.width..(r + 1) * p.width].to_vec())
            .collect();
        Ok(Some((rows, cache, mask, p.width)))
    }

    /// One decode step of the running sequences: feed each one's pending token, sample the next,
    /// and drop the sequences that ended.
    fn decode<S, T>(&mut self, model: &mut S, text: &T, events: &mut Vec<Event>) -> Result<(), S::Error>
    where
        S: DecoderStep<Cache = C>,
        T: TokenText + ?Sized,
    {
        let b = self.running.len();
        let ids: Vec<Vec<u32>> = self.running.iter().map(|r| vec![r.pending]).collect();
        let mut mask = Vec::with_capacity(b * (self.width + 1));
        for row in self.mask.chunks(self.width.max(1)) {
            mask.extend_from_slice(row);
            mask.push(1);
        }
        let profiles = profiles_of(&self.running);
        let trace = self.running.iter().any(|r| r.reply.trace.is_some());
        let t = Instant::now();
        let out = model.step(StepInput {
            ids: &ids,
            mask: &mask,
            profiles: profiles.as_deref(),
            past: self.cache.take(),
            routing: trace,
        })?;
        let seconds = t.elapsed().as_secs_f64();
        self.mask = mask;
        self.width += 1;
        self.cache = Some(out.cache);
        let vocab = model.vocab();
        check_logits(&out.last_logits, b, vocab)?;
        if let Some(routing) = &out.routing {
            let step = routing.view(b, 1);
            for (r, row) in self.running.iter_mut().enumerate() {
                if let Some(trace) = row.reply.trace.as_mut() {
                    trace.append(&step, r, &ids[r])?;
                }
            }
        }
        let mut keep = Vec::with_capacity(b);
        for (r, row) in self.running.iter_mut().enumerate() {
            row.timings.decode_seconds.push(seconds);
            if row.advance(&out.last_logits[r * vocab..(r + 1) * vocab], text, events)? {
                keep.push(r);
            }
        }
        if keep.len() < b {
            let mut all = std::mem::take(&mut self.running).into_iter().enumerate();
            let mut kept = Vec::with_capacity(keep.len());
            for (r, row) in all.by_ref() {
                if keep.contains(&r) {
                    kept.push(row);
                } else {
                    events.push(done(row));
                }
            }
            self.running = kept;
            self.select(&keep)?;
        }
        Ok(())
    }

    /// Keeps the running rows at `keep` (an ascending subset), in cache and mask too.
    fn keep_running(&mut self, keep: &[usize]) -> Result<(), ServeError> {
        let mut kept = Vec::with_capacity(keep.len());
        for (r, row) in std::mem::take(&mut self.running).into_iter().enumerate() {
            if keep.contains(&r) {
                kept.push(row);
            }
        }
        self.running = kept;
        self.select(keep)
    }

    /// Keeps cache and mask rows `keep`, then cuts front positions every kept row masks.
    fn select(&mut self, keep: &[usize]) -> Result<(), ServeError> {
        let w = self.width;
        if keep.is_empty() {
            self.cache = None;
            self.mask.clear();
            self.width = 0;
            return Ok(());
        }
        let mask: Vec<i64> = keep
            .iter()
            .flat_map(|&r| self.mask[r * w..(r + 1) * w].to_vec())
            .collect();
        let mut cache = self
            .cache
            .take()
            .ok_or_else(|| ServeError::Backend("running rows without a cache".into()))?
            .select_rows(keep)?;
        let unused = mask
            .chunks(w)
            .map(|row| row.iter().take_while(|&&m| m == 0).count())
            .min()
            .unwrap_or(0);
        if unused > 0 {
            cache = cache.drop_front(unused)?;
        }
        self.mask = mask.chunks(w).flat_map(|row| row[unused..].to_vec()).collect();
        self.width = w - unused;
        self.cache = Some(cache);
        Ok(())
    }

    /// Appends prefilled rows to the running batch, padding whichever cache is shorter at the front.
    fn join(&mut self, rows: Vec<Running>, cache: C, mask: Vec<i64>, width: usize) -> Result<(), ServeError> {
        let Some(running) = self.cache.take().filter(|_| !self.running.is_empty()) else {
            self.running = rows;
            self.cache = Some(cache);
            self.mask = mask;
            self.width = width;
            return Ok(());
        };
        if running.positions() != self.width || cache.positions() != width {
            return Err(ServeError::Backend(format!(
                "cache positions {} / {} do not match the masks ({} / {width})",
                running.positions(),
                cache.positions(),
                self.width
            )));
        }
        let w = self.width.max(width);
        let pad_rows = |m: &[i64], from: usize| -> Vec<i64> {
            m.chunks(from.max(1))
                .flat_map(|row| std::iter::repeat_n(0, w - from).chain(row.iter().copied()))
                .collect()
        };
        let mut mask_all = pad_rows(&self.mask, self.width);
        mask_all.extend(pad_rows(&mask, width));
        let old = if self.width < w {
            running.pad_front(w - self.width)?
        } else {
            running
        };
        let new = if width < w { cache.pad_front(w - width)? } else { cache };
        self.cache = Some(old.append_rows(new)?);
        self.mask = mask_all;
        self.width = w;
        self.running.extend(rows);
        Ok(())
    }
}

/// The rows' profile vectors, concatenated, when they have them.
fn profiles_of(rows: &[Running]) -> Option<Vec<f32>> {
    if rows.iter().any(|r| r.profile.is_none()) {
        return None;
    }
    Some(
        rows.iter()
            .flat_map(|r| r.profile.clone().unwrap_or_default())
            .collect(),
    )
}

impl Running {
    /// Samples the next token from `logits`, streams the text that became safe, and ends the
    /// reply at its budget (streaming what it held back). Returns whether it is still running.
    fn advance<T: TokenText + ?Sized>(
        &mut self,
        logits: &[f32],
        text: &T,
        events: &mut Vec<Event>,
    ) -> Result<bool, ServeError> {
        let accepted = self.reply.accept(logits, text, &self.options)?;
        self.pending = accepted.token;
        if let Some(piece) = accepted.piece {
            events.push(Event::Token {
                id: self.id,
                token: accepted.token,
                text: piece,
            });
        }
        if self.reply.generated() >= self.budget {
            self.reply.finish(super::FinishReason::Length);
        }
        if !self.reply.is_done() {
            return Ok(true);
        }
        if let Some(rest) = self.reply.flush() {
            let token = self.reply.last_token(self.pending);
            events.push(Event::Token {
                id: self.id,
                token,
                text: rest,
            });
        }
        Ok(false)
    }
}

fn done(row: Running) -> Event {
    Event::Done {
        id: row.id,
        generation: Box::new(row.reply.into_generation(row.prompt_tokens, row.timings)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::{RoutingOutput, StepOutput};

    /// A toy decoder whose next token depends only on a row's real tokens (masked positions are
    /// ignored): the sum of the row's tokens plus its profile value, mod the vocabulary. Its cache
    /// is `[rows][positions]` (token, or 0 for padding) plus the mask.
    struct Toy {
        vocab: usize,
        context: usize,
        calls: Vec<(usize, usize)>,
    }

    #[derive(Debug, Clone, PartialEq)]
    struct ToyCache(Vec<Vec<(u32, i64)>>);

    impl KvCache for ToyCache {
        fn positions(&self) -> usize {
            self.0.first().map_or(0, Vec::len)
        }
        fn select_rows(self, rows: &[usize]) -> Result<Self, ServeError> {
            Ok(Self(rows.iter().map(|&r| self.0[r].clone()).collect()))
        }
        fn pad_front(self, n: usize) -> Result<Self, ServeError> {
            Ok(Self(
                self.0
                    .into_iter()
                    .map(|row| std::iter::repeat_n((0, 0), n).chain(row).collect())
                    .collect(),
            ))
        }
        fn drop_front(self, n: usize) -> Result<Self, ServeError> {
            Ok(Self(self.0.into_iter().map(|row| row[n..].to_vec()).collect()))
        }
        fn append_rows(mut self, other: Self) -> Result<Self, ServeError> {
            self.0.extend(other.0);
            Ok(self)
        }
    }

    impl DecoderStep for Toy {
        type Cache = ToyCache;
        type Error = ServeError;
        fn vocab(&self) -> usize {
            self.vocab
        }
        fn context(&self) -> usize {
            self.context
        }
        fn routers(&self) -> Vec<String> {
            vec!["r".into()]
        }
        fn step(&mut self, input: StepInput<'_, ToyCache>) -> Result<StepOutput<ToyCache>, ServeError> {
            let b = input.ids.len();
            let seq = input.ids[0].len();
            let mut past = input.past.unwrap_or(ToyCache(vec![Vec::new(); b]));
            let total = input.mask.len() / b;
            assert_eq!(past.positions() + seq, total, "mask width = past + new");
            self.calls.push((b, seq));
            let mut logits = vec![0.0; b * self.vocab];
            for r in 0..b {
                let mask = &input.mask[r * total..(r + 1) * total];
                for (k, &id) in input.ids[r].iter().enumerate() {
                    past.0[r].push((id, mask[total - seq + k]));
                }
                for (k, &(_, m)) in past.0[r].iter().enumerate() {
                    assert_eq!(m, mask[k], "the cache's mask agrees with the step's");
                }
                let sum: u64 = past.0[r].iter().filter(|t| t.1 == 1).map(|t| u64::from(t.0)).sum();
                let profile = input.profiles.map_or(0.0, |p| p[r]);
                let next = (sum + profile as u64) % self.vocab as u64;
                logits[r * self.vocab + next as usize] = 1.0;
            }
            let routing = input.routing.then(|| RoutingOutput {
                experts: vec![0; b * seq],
                gates: vec![1.0; b * seq],
                dense_gates: None,
            });
            Ok(StepOutput {
                last_logits: logits,
                cache: past,
                routing,
            })
        }
    }

    struct Digits;
    impl TokenText for Digits {
        fn decode(&self, ids: &[u32]) -> Result<String, ServeError> {
            Ok(ids.iter().map(|i| format!("{i},")).collect())
        }
        fn end_of_turn(&self) -> &[u32] {
            &[0]
        }
    }

    fn seq(id: u64, prompt: &[u32], profile: f32, max: usize) -> Sequence {
        Sequence {
            id,
            prompt: prompt.to_vec(),
            profile: Some(vec![profile]),
            options: GenerateOptions {
                max_new_tokens: max,
                trace_routing: true,
                ..Default::default()
            },
        }
    }

    /// Runs until idle, admitting `arrivals[k]` before step k.
    fn run(toy: &mut Toy, chunk: usize, arrivals: Vec<Vec<Sequence>>) -> Vec<(u64, Generation, String)> {
        let mut b = Batcher::new(chunk);
        let mut queue: std::collections::VecDeque<Vec<Sequence>> = arrivals.into();
        let mut streamed = std::collections::BTreeMap::<u64, String>::new();
        let mut out = Vec::new();
        for _ in 0..1000 {
            if b.can_admit() {
                if let Some(group) = queue.pop_front() {
                    assert!(b.admit(toy, group).is_empty());
                }
            }
            if b.is_idle() && queue.is_empty() {
                break;
            }
            for e in b.step(toy, &Digits).expect("step") {
                match e {
                    Event::Token { id, text, .. } => streamed.entry(id).or_default().push_str(&text),
                    Event::Done { id, generation } => {
                        out.push((id, *generation, streamed.remove(&id).unwrap_or_default()))
                    }
                }
            }
        }
        out.sort_by_key(|o| o.0);
        out
    }

    #[test]
    fn sequences_get_the_reply_they_get_alone_whenever_they_join() {
        let mut toy = Toy {
            vocab: 11,
            context: 64,
            calls: Vec::new(),
        };
        let a = seq(1, &[3, 4, 5, 6, 7], 1.0, 6);
        let b = seq(2, &[2], 2.0, 9);
        let c = seq(3, &[9, 9, 1], 0.0, 4);
        let alone: Vec<_> = [&a, &b, &c]
            .iter()
            .map(|s| run(&mut toy, 2, vec![vec![(*s).clone()]]).remove(0))
            .collect();
        // a and b together, c arriving while they decode; chunks of 2 positions.
        let together = run(&mut toy, 2, vec![vec![a, b], vec![c]]);
        assert_eq!(together.len(), 3);
        for ((id, got, streamed), (_, want, _)) in together.iter().zip(&alone) {
            assert_eq!(got.token_ids, want.token_ids, "sequence {id}");
            assert_eq!(got.finish_reason, want.finish_reason, "sequence {id}");
            assert_eq!(&got.text, streamed, "sequence {id}: streamed text is the text");
            let trace = got.routing.as_ref().expect("trace");
            let fed = match got.finish_reason {
                crate::serve::FinishReason::EndOfTurn => got.token_ids.len(),
                _ => got.token_ids.len().saturating_sub(1),
            };
            assert_eq!(trace.tokens.len(), got.prompt_tokens + fed, "sequence {id}: trace");
        }
        // Prefill in chunks of at most 2 positions, and decode steps batch the running rows.
        assert!(toy.calls.iter().all(|&(_, s)| s <= 2));
        assert!(toy.calls.iter().any(|&(b, s)| b == 2 && s == 1));
    }

    #[test]
    fn budgets_bad_requests_and_cancellation() {
        let mut toy = Toy {
            vocab: 11,
            context: 8,
            calls: Vec::new(),
        };
        let mut b = Batcher::new(16);
        let refused = b.admit(
            &toy,
            vec![
                seq(1, &[], 0.0, 4),
                seq(2, &[1; 8], 0.0, 4),
                seq(3, &[1, 2], 0.0, 100),
                seq(4, &[1], 0.0, 100),
                seq(5, &[1], 0.0, 0),
            ],
        );
        let ids: Vec<u64> = refused.iter().map(|r| r.0).collect();
        assert_eq!(
            ids,
            vec![1, 2, 5],
            "empty and over-long prompts and no budget are refused"
        );
        assert!(b.cancel(4).expect("cancel"));
        let mut done = Vec::new();
        while !b.is_idle() {
            for e in b.step(&mut toy, &Digits).expect("step") {
                if let Event::Done { id, generation } = e {
                    done.push((id, generation));
                }
            }
        }
        assert_eq!(done.len(), 1, "the cancelled sequence is not reported");
        let (id, g) = &done[0];
        assert_eq!(*id, 3);
        // Context 8, prompt 2: at most 6 new tokens (unless it ended its turn first).
        assert!(g.token_ids.len() <= 6, "{g:?}");
        if g.finish_reason == crate::serve::FinishReason::Length {
            assert_eq!(g.token_ids.len(), 6);
        }
    }
}
