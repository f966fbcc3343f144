//! The scheduler: one thread that owns the [`Session`] and runs the continuous batch. Handlers
//! send it [`Job`]s; it admits chat jobs into the batch between steps (up to `max_batch`
//! sequences), answers choice jobs between steps, streams every sequence's events back on its own
//! channel, cancels sequences whose client went away (the channel closed) or whose deadline
//! passed, and keeps the metrics.

use super::api::ChatRequest;
use super::error::ApiError;
use super::metrics::Metrics;
use crate::kv_cache::HostKvCache;
use crate::{ChoiceDistribution, Generation, Profile, RuntimeError, Session};
use cuma_model::serve::batching::{Batcher, Event, Sequence, SequenceId};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// What a chat request hears back, in order: `Started` (or `Failed`), `Token`s, then `Done` (or
/// `Failed`).
#[derive(Debug)]
pub enum ChatEvent {
    /// Admitted: the prompt fits and generation began.
    Started {
        prompt_tokens: usize,
        warnings: Vec<String>,
    },
    Token(String),
    Done(Box<Generation>),
    Failed(ApiError),
}

/// Work for the scheduler.
pub enum Job {
    Chat {
        request: Box<ChatRequest>,
        events: mpsc::UnboundedSender<ChatEvent>,
        arrived: Instant,
    },
    Choice {
        request: super::api::ChoiceRequest,
        reply: oneshot::Sender<Result<ChoiceAnswer, ApiError>>,
    },
}

/// The distributions of one `/v1/choice` request, one per profile.
pub struct ChoiceAnswer {
    pub results: Vec<(Profile, ChoiceDistribution)>,
    pub warnings: Vec<String>,
}

/// How the scheduler batches.
#[derive(Debug, Clone, Copy)]
pub struct SchedulerOptions {
    /// Most sequences prefilled or decoded at once.
    pub max_batch: usize,
    /// Most prompt positions one prefill call runs (a newcomer holds the batch back by at most
    /// this much per step).
    pub prefill_chunk: usize,
    /// Per-request deadline, from arrival.
    pub timeout: Duration,
}

/// A chat job waiting for a batch slot, or running.
struct Chat {
    events: mpsc::UnboundedSender<ChatEvent>,
    arrived: Instant,
    first_token: bool,
}

/// Runs until `jobs` closes (every sender dropped: the server stopped) and the batch drains.
pub fn run(mut session: Session, jobs: Receiver<Job>, options: SchedulerOptions, metrics: Arc<Metrics>) {
    let mut batcher: Batcher<HostKvCache> = Batcher::new(options.prefill_chunk);
    let mut waiting: VecDeque<(Box<ChatRequest>, Chat)> = VecDeque::new();
    let mut running: HashMap<SequenceId, Chat> = HashMap::new();
    let mut next_id: SequenceId = 0;
    let mut open = true;
    loop {
        // Take new jobs: block while there is nothing to do, else only look.
        if batcher.is_idle() && waiting.is_empty() {
            if !open {
                break;
            }
            match jobs.recv_timeout(Duration::from_millis(200)) {
                Ok(job) => accept(job, &mut session, &mut waiting, &metrics),
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        }
        loop {
            match jobs.try_recv() {
                Ok(job) => accept(job, &mut session, &mut waiting, &metrics),
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        // Waiting jobs whose client left or whose deadline passed go.
        waiting.retain(|(_, chat)| {
            if chat.events.is_closed() {
                metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                return false;
            }
            if chat.arrived.elapsed() > options.timeout {
                let _ = chat
                    .events
                    .send(ChatEvent::Failed(ApiError::timeout(options.timeout.as_secs_f64())));
                metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                return false;
            }
            true
        });
        // Admit newcomers into free slots.
        if batcher.can_admit() {
            let occupied = batcher.occupancy().running;
            let mut group = Vec::new();
            while occupied + group.len() < options.max_batch {
                let Some((request, chat)) = waiting.pop_front() else {
                    break;
                };
                metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
                next_id += 1;
                match sequence(&mut session, next_id, &request) {
                    Ok((sequence, warnings)) => {
                        let _ = chat.events.send(ChatEvent::Started {
                            prompt_tokens: sequence.prompt.len(),
                            warnings,
                        });
                        metrics
                            .prompt_tokens
                            .fetch_add(sequence.prompt.len() as u64, Ordering::Relaxed);
                        running.insert(next_id, chat);
                        group.push(sequence);
                    }
                    Err(e) => {
                        let _ = chat.events.send(ChatEvent::Failed(ApiError::from_runtime(&e)));
                    }
                }
            }
            if !group.is_empty() {
                for (id, e) in session.admit(&mut batcher, group) {
                    if let Some(chat) = running.remove(&id) {
                        let _ = chat.events.send(ChatEvent::Failed(ApiError::from_runtime(&e)));
                    }
                }
            }
            record_cache(&session, &metrics);
        }
        if batcher.is_idle() {
            metrics.running.store(0, Ordering::Relaxed);
            continue;
        }
        let occupancy = batcher.occupancy();
        let in_batch = (occupancy.running + occupancy.prefilling) as u64;
        metrics.running.store(in_batch, Ordering::Relaxed);
        metrics.peak_running.fetch_max(in_batch, Ordering::Relaxed);
        match session.batch_step(&mut batcher) {
            Ok(events) => dispatch(events, &mut running, &metrics),
            Err(e) => {
                // The model failed: every sequence in the batch fails with it, and the batch
                // starts over empty.
                let error = ApiError::internal(format!("the model failed: {e}"));
                for (_, chat) in running.drain() {
                    let _ = chat.events.send(ChatEvent::Failed(error.clone()));
                }
                batcher = Batcher::new(options.prefill_chunk);
            }
        }
        // Sequences whose client left, or that ran past their deadline, free their slots.
        let gone: Vec<(SequenceId, bool)> = running
            .iter()
            .filter_map(|(&id, chat)| {
                if chat.events.is_closed() {
                    Some((id, false))
                } else if chat.arrived.elapsed() > options.timeout {
                    Some((id, true))
                } else {
                    None
                }
            })
            .collect();
        for (id, late) in gone {
            let _ = batcher.cancel(id);
            if let Some(chat) = running.remove(&id) {
                if late {
                    let _ = chat
                        .events
                        .send(ChatEvent::Failed(ApiError::timeout(options.timeout.as_secs_f64())));
                }
            }
        }
    }
}

/// Queues a chat job, or answers a choice job at once (between steps).
fn accept(job: Job, session: &mut Session, waiting: &mut VecDeque<(Box<ChatRequest>, Chat)>, metrics: &Metrics) {
    match job {
        Job::Chat {
            request,
            events,
            arrived,
        } => waiting.push_back((
            request,
            Chat {
                events,
                arrived,
                first_token: false,
            },
        )),
        Job::Choice { request, reply } => {
            metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
            let answer = choice(session, &request);
            record_cache(session, metrics);
            let _ = reply.send(answer);
        }
    }
}

fn choice(session: &mut Session, request: &super::api::ChoiceRequest) -> Result<ChoiceAnswer, ApiError> {
    let mut results = Vec::with_capacity(request.profiles.len());
    for profile in &request.profiles {
        let d = session
            .choice_distribution(profile, &request.question, &request.options, request.trace_routing)
            .map_err(|e| ApiError::from_runtime(&e))?;
        results.push((profile.clone(), d));
    }
    Ok(ChoiceAnswer {
        results,
        warnings: session.take_warnings(),
    })
}

/// The sequence for a chat request: prompt ids, profile vector, and the warnings about its
/// profile.
fn sequence(session: &mut Session, id: SequenceId, r: &ChatRequest) -> Result<(Sequence, Vec<String>), RuntimeError> {
    let _ = session.take_warnings();
    let profile = if session.reads_profile_vector() {
        Some(session.encode_profile(&r.profile)?)
    } else {
        None
    };
    let prompt = session.prompt_ids(&r.profile, &r.messages)?;
    let sequence = Sequence {
        id,
        prompt,
        profile,
        options: r.options.clone(),
    };
    Ok((sequence, session.take_warnings()))
}

fn record_cache(session: &Session, metrics: &Metrics) {
    let stats = session.profile_cache_stats();
    metrics.profile_cache_hits.store(stats.hits, Ordering::Relaxed);
    metrics.profile_cache_misses.store(stats.misses, Ordering::Relaxed);
}

/// Sends each event to its request; a finished sequence records its latencies.
fn dispatch(events: Vec<Event>, running: &mut HashMap<SequenceId, Chat>, metrics: &Metrics) {
    for event in events {
        match event {
            Event::Token { id, text, .. } => {
                if let Some(chat) = running.get_mut(&id) {
                    if !chat.first_token {
                        chat.first_token = true;
                        metrics.time_to_first_token(chat.arrived.elapsed().as_secs_f64());
                    }
                    let _ = chat.events.send(ChatEvent::Token(text));
                }
            }
            Event::Done { id, generation } => {
                if let Some(chat) = running.remove(&id) {
                    if !chat.first_token {
                        metrics.time_to_first_token(chat.arrived.elapsed().as_secs_f64());
                    }
                    for &s in &generation.timings.decode_seconds {
                        metrics.inter_token(s);
                    }
                    metrics
                        .generated_tokens
                        .fetch_add(generation.token_ids.len() as u64, Ordering::Relaxed);
                    let _ = chat.events.send(ChatEvent::Done(generation));
                }
            }
        }
    }
}
