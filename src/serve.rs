//! libtorch's [`Backbone`] as a [`DecoderStep`] of the serving core (`cuma_model::serve`), and
//! its tokenizer as the core's [`TokenText`]: `cuma generate` and `cuma eval` serve through the
//! same loop, padding and scoring as the bundle runtime.

use crate::models::backbone::{Backbone, StepInput as TchInput};
use crate::tch_ops::TchOps;
use crate::tokenizer::TextTokenizer;
use crate::{Error, Result};
use cuma_model::arch::KvPair;
use cuma_model::serve::{DecoderStep, RoutingOutput, ServeError, StepInput, StepOutput, TokenText};
pub use cuma_model::serve::{FinishReason, GenerateOptions, Generation, Timings, TokenEvent};
use tch::{Kind, Tensor};

impl From<ServeError> for Error {
    fn from(e: ServeError) -> Self {
        match e {
            ServeError::Input(m) | ServeError::Backend(m) | ServeError::Tokenizer(m) => Error::Invalid(m),
        }
    }
}

/// A loaded backbone (with its adapters, when attached) stepping under `no_grad`.
pub struct BackboneStep<'a> {
    pub model: &'a Backbone,
    /// The profile vectors last placed on the device: every step of a request passes the same
    /// ones, so they are copied once per request, not once per token.
    profiles: Option<(Vec<f32>, Tensor)>,
}

impl<'a> BackboneStep<'a> {
    pub fn new(model: &'a Backbone) -> Self {
        Self { model, profiles: None }
    }

    /// `values` (`[b * D]`) as a `[b, D]` tensor on the model's device, reused when unchanged.
    fn profiles_on_device(&mut self, values: &[f32], b: usize) -> Result<Tensor> {
        match &self.profiles {
            Some((host, t)) if host.as_slice() == values => Ok(t.shallow_clone()),
            _ => {
                let t = to_device(values, b, self.model.device)?;
                self.profiles = Some((values.to_vec(), t.shallow_clone()));
                Ok(t)
            }
        }
    }
}

/// `rows` of host values as a `[rows, cols]` tensor on `device`.
fn to_device<T: tch::kind::Element>(values: &[T], rows: usize, device: tch::Device) -> Result<Tensor> {
    Ok(Tensor::f_from_slice(values)?
        .f_view([rows as i64, -1])?
        .f_to_device(device)?)
}

/// `[R, b, s, n]` stacked routing tensors as host values.
fn stacked<T>(parts: Vec<&Tensor>, kind: Kind) -> Result<Vec<T>>
where
    Vec<T>: for<'t> TryFrom<&'t Tensor, Error = tch::TchError>,
{
    let t = Tensor::f_stack(&parts, 0)?
        .f_to_kind(kind)?
        .f_to_device(tch::Device::Cpu)?
        .f_contiguous()?;
    Ok(Vec::<T>::try_from(&t.f_view([-1])?)?)
}

impl DecoderStep for BackboneStep<'_> {
    type Cache = Vec<KvPair<Tensor>>;
    type Error = Error;

    fn vocab(&self) -> usize {
        self.model.config().vocab_size
    }

    fn context(&self) -> usize {
        self.model.config().max_position_embeddings
    }

    fn routers(&self) -> Vec<String> {
        self.model.decoder.router_labels()
    }

    fn step(&mut self, input: StepInput<'_, Self::Cache>) -> Result<StepOutput<Self::Cache>> {
        let (b, s) = (input.ids.len(), input.ids.first().map_or(0, Vec::len));
        if b == 0 || s == 0 || input.ids.iter().any(|r| r.len() != s) || input.mask.len() % b != 0 {
            return Err(ServeError::Input(format!(
                "step: {b} rows of {s} new tokens with a mask of {} values",
                input.mask.len()
            ))
            .into());
        }
        let _guard = tch::no_grad_guard();
        let device = self.model.device;
        let ids: Vec<i64> = input.ids.iter().flatten().map(|&i| i64::from(i)).collect();
        let ids = to_device(&ids, b, device)?;
        let mask = to_device(input.mask, b, device)?;
        let profile = match input.profiles {
            Some(p) => Some(self.profiles_on_device(p, b)?),
            None => None,
        };
        let mut o = TchOps::new(device);
        let out = self.model.run_hidden(
            &mut o,
            &TchInput {
                ids: &ids,
                attention_mask: &mask,
                past: input.past.as_deref(),
                profile: profile.as_ref(),
            },
        )?;
        let last = out.hidden.f_select(1, s as i64 - 1)?; // [b, hidden]
        let logits = self
            .model
            .decoder
            .logits(&mut o, &last)?
            .f_to_kind(Kind::Float)?
            .f_to_device(tch::Device::Cpu)?
            .f_contiguous()?;
        let last_logits = Vec::<f32>::try_from(&logits.f_view([-1])?)?;
        let routing = if input.routing && !out.routing.is_empty() {
            let experts = stacked(out.routing.iter().map(|r| &r.experts).collect(), Kind::Int64)?;
            let gates = stacked(out.routing.iter().map(|r| &r.topk_gates).collect(), Kind::Float)?;
            let experts_n = out.routing[0].gates.size().last().copied().unwrap_or(0) as usize;
            let dense = stacked(out.routing.iter().map(|r| &r.gates).collect(), Kind::Float)?;
            Some(RoutingOutput {
                experts,
                gates,
                dense_gates: Some((dense, experts_n)),
            })
        } else {
            None
        };
        Ok(StepOutput {
            last_logits,
            cache: out.presents,
            routing,
        })
    }
}

impl TokenText for TextTokenizer {
    fn decode(&self, ids: &[u32]) -> Result<String, ServeError> {
        TextTokenizer::decode(self, ids).map_err(|e| ServeError::Tokenizer(e.to_string()))
    }

    fn end_of_turn(&self) -> &[u32] {
        &self.end_of_turn
    }
}

/// Generates replies to `prompts` on `model` through the serving core, with `profiles`
/// (`[batch, D]`, for demographic routers).
pub fn generate(
    model: &Backbone,
    prompts: &[Vec<u32>],
    profiles: Option<&Tensor>,
    options: &GenerateOptions,
    on_token: impl FnMut(TokenEvent<'_>),
) -> Result<Vec<Generation>> {
    let profiles = match profiles {
        Some(t) => Some(Vec::<f32>::try_from(
            &t.f_to_kind(Kind::Float)?
                .f_to_device(tch::Device::Cpu)?
                .f_contiguous()?
                .f_view([-1])?,
        )?),
        None => None,
    };
    cuma_model::serve::generate::generate(
        &mut BackboneStep::new(model),
        &model.tokenizer,
        prompts,
        profiles.as_deref(),
        options,
        Timings::default(),
        on_token,
    )
}
