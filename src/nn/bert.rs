//! A BERT encoder on candle that returns every hidden state.
//!
//! candle-transformers' `BertModel` returns only the last layer and keeps its layers private, so
//! this module re-implements the forward pass of Hugging Face's `BertModel` (absolute positions,
//! post-LayerNorm, GELU) and reuses its [`Config`]. The output follows transformers'
//! `output_hidden_states=True`: index 0 is the embedding output, index `i` the output of layer `i`.
//!
//! Weights are read under transformers' names (`bert.embeddings.…`, LayerNorm `weight` / `bias`),
//! which [`crate::nn::weights::read_checkpoint`] gives every checkpoint layout.

use crate::nn::dropout::{Dropout, Mask};
use crate::nn::kernels::{self, Pass};
use anyhow::{bail, Result};
use candle_core::{DType, Module, Tensor};
use candle_nn::{embedding, linear, Embedding, Linear, VarBuilder};
pub use candle_transformers::models::bert::{Config, HiddenAct};

/// How a forward pass runs: inference, or training (dropout on, every kernel a node of candle's
/// graph). Both run the same fused CPU kernels ([`kernels`]); inference on another device (a GPU,
/// with the `cuda` feature) runs candle's own operations.
pub(crate) enum Mode<'a> {
    /// Inference: no dropout, nothing kept for a backward pass.
    Eval,
    /// Training: dropout from the given masks, kernels with a backward pass.
    Train(&'a mut Dropout),
}

impl Mode<'_> {
    fn dropout(&mut self, x: Tensor, p: f32) -> candle_core::Result<Tensor> {
        match self {
            Mode::Eval => Ok(x),
            Mode::Train(d) => d.apply(&x, p),
        }
    }

    /// The kernels' pass.
    fn pass(&self) -> Pass {
        match self {
            Mode::Eval => Pass::Infer,
            Mode::Train(_) => Pass::Train,
        }
    }

    /// Whether the fused kernels run on `x`: always in training (they refuse a tensor off the
    /// CPU with a clear error), in inference when `x` is on the CPU.
    fn fused(&self, x: &Tensor) -> bool {
        matches!(self, Mode::Train(_)) || x.device().is_cpu()
    }

    /// A fresh dropout mask of rate `p`: none in inference or when `p` is 0.
    fn mask(&mut self, p: f32) -> Option<Mask> {
        match self {
            Mode::Train(d) if p > 0.0 => Some(d.mask(p)),
            _ => None,
        }
    }
}

/// A Linear layer as one node ([`kernels::linear`]), whose backward writes the weight gradient
/// in the weight's own layout; candle's own for a layer without bias or off the CPU.
pub(crate) fn apply_linear(layer: &Linear, x: &Tensor, mode: &Mode) -> candle_core::Result<Tensor> {
    match layer.bias() {
        Some(bias) if mode.fused(x) => kernels::linear(x, layer.weight(), bias, mode.pass()),
        _ => layer.forward(x),
    }
}

/// A LayerNorm over the last dimension (weight and bias).
struct Norm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl Norm {
    fn load(size: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<Self> {
        Ok(Self {
            weight: vb.get(size, "weight")?,
            bias: vb.get(size, "bias")?,
            eps,
        })
    }

    fn forward(&self, x: &Tensor, mode: &Mode) -> candle_core::Result<Tensor> {
        if !mode.fused(x) {
            let x = x.contiguous()?;
            return candle_nn::ops::layer_norm(&x, &self.weight, &self.bias, self.eps as f32);
        }
        kernels::layer_norm(x, (&self.weight, &self.bias), self.eps, mode.pass())
    }

    /// LayerNorm(dropout(y, p) + residual): a sub-layer's end, one node.
    fn add_forward(
        &self,
        y: Tensor,
        residual: &Tensor,
        p: f32,
        mode: &mut Mode,
    ) -> candle_core::Result<Tensor> {
        if !mode.fused(&y) {
            return self.forward(&(y + residual)?, mode);
        }
        let drop = mode.mask(p);
        kernels::add_norm(
            &y,
            residual,
            (&self.weight, &self.bias),
            self.eps,
            (drop, mode.pass()),
        )
    }
}

struct EmbeddingLayer {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: Norm,
    dropout: f32,
}

impl EmbeddingLayer {
    fn load(vb: VarBuilder, c: &Config) -> candle_core::Result<Self> {
        Ok(Self {
            word: embedding(c.vocab_size, c.hidden_size, vb.pp("word_embeddings"))?,
            position: embedding(
                c.max_position_embeddings,
                c.hidden_size,
                vb.pp("position_embeddings"),
            )?,
            token_type: embedding(
                c.type_vocab_size,
                c.hidden_size,
                vb.pp("token_type_embeddings"),
            )?,
            norm: Norm::load(c.hidden_size, c.layer_norm_eps, vb.pp("LayerNorm"))?,
            dropout: c.hidden_dropout_prob as f32,
        })
    }

    fn forward(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        mode: &mut Mode,
    ) -> candle_core::Result<Tensor> {
        let seq_len = input_ids.dim(1)?;
        let positions = Tensor::arange(0u32, seq_len as u32, input_ids.device())?;
        let x = self
            .word
            .forward(input_ids)?
            .add(&self.token_type.forward(token_type_ids)?)?
            .broadcast_add(&self.position.forward(&positions)?)?;
        let x = self.norm.forward(&x, mode)?;
        mode.dropout(x, self.dropout)
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: Norm,
    intermediate: Linear,
    output: Linear,
    out_norm: Norm,
    heads: usize,
    act: HiddenAct,
    hidden_dropout: f32,
    attention_dropout: f32,
}

impl Layer {
    fn load(vb: VarBuilder, c: &Config, attention_dropout: f32) -> candle_core::Result<Self> {
        let h = c.hidden_size;
        let att = vb.pp("attention");
        Ok(Self {
            query: linear(h, h, att.pp("self").pp("query"))?,
            key: linear(h, h, att.pp("self").pp("key"))?,
            value: linear(h, h, att.pp("self").pp("value"))?,
            attn_out: linear(h, h, att.pp("output").pp("dense"))?,
            attn_norm: Norm::load(h, c.layer_norm_eps, att.pp("output").pp("LayerNorm"))?,
            intermediate: linear(h, c.intermediate_size, vb.pp("intermediate").pp("dense"))?,
            output: linear(c.intermediate_size, h, vb.pp("output").pp("dense"))?,
            out_norm: Norm::load(h, c.layer_norm_eps, vb.pp("output").pp("LayerNorm"))?,
            heads: c.num_attention_heads,
            act: c.hidden_act,
            hidden_dropout: c.hidden_dropout_prob as f32,
            attention_dropout,
        })
    }

    /// The query, key and value weights stacked, (3 · hidden, hidden); gradients flow back to
    /// each.
    fn qkv_weight(&self) -> candle_core::Result<Tensor> {
        Tensor::cat(
            &[self.query.weight(), self.key.weight(), self.value.weight()],
            0,
        )
    }

    /// The query, key and value biases stacked, (3 · hidden).
    fn qkv_bias(&self) -> candle_core::Result<Tensor> {
        let bias = |l: &Linear| {
            l.bias().cloned().ok_or_else(|| {
                candle_core::Error::Msg("attention: a projection without bias".into())
            })
        };
        Tensor::cat(
            &[bias(&self.query)?, bias(&self.key)?, bias(&self.value)?],
            0,
        )
    }

    /// `x`: (batch, seq, hidden); `mask`: (batch, 1, 1, seq) additive.
    fn forward(&self, x: &Tensor, mask: &Tensor, mode: &mut Mode) -> candle_core::Result<Tensor> {
        if !mode.fused(x) {
            return self.forward_off_cpu(x, mask);
        }
        // One product for the three projections: (batch, seq, 3 · hidden).
        let qkv = kernels::linear(x, &self.qkv_weight()?, &self.qkv_bias()?, mode.pass())?;
        let drop = mode.mask(self.attention_dropout);
        let ctx = kernels::attention(&qkv, mask, self.heads, (drop, mode.pass()))?;
        let attn = self.attn_norm.add_forward(
            apply_linear(&self.attn_out, &ctx, mode)?,
            x,
            self.hidden_dropout,
            mode,
        )?;
        let inter = match (self.act, mode.pass(), self.intermediate.bias()) {
            (HiddenAct::Gelu, Pass::Infer, Some(bias)) => {
                kernels::linear_gelu_infer(&attn, self.intermediate.weight(), bias)?
            }
            (act, ..) => {
                let inter = apply_linear(&self.intermediate, &attn, mode)?;
                match act {
                    HiddenAct::Gelu => kernels::gelu_erf(&inter, mode.pass())?,
                    HiddenAct::GeluApproximate => inter.gelu()?,
                    HiddenAct::Relu => inter.relu()?,
                }
            }
        };
        self.out_norm.add_forward(
            apply_linear(&self.output, &inter, mode)?,
            &attn,
            self.hidden_dropout,
            mode,
        )
    }

    /// Inference off the CPU (a GPU, with the `cuda` feature), where the fused kernels do not
    /// run: candle's own operations, the same computation.
    fn forward_off_cpu(&self, x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let head_dim = h / self.heads;
        let split = |y: Tensor| -> candle_core::Result<Tensor> {
            y.reshape((b, t, self.heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (
            split(self.query.forward(x)?)?,
            split(self.key.forward(x)?)?,
            split(self.value.forward(x)?)?,
        );
        let scores = (q.matmul(&k.t()?)? / (head_dim as f64).sqrt())?.broadcast_add(mask)?;
        let ctx = candle_nn::ops::softmax_last_dim(&scores)?.matmul(&v)?;
        let ctx = ctx.transpose(1, 2)?.reshape((b, t, h))?;
        let eval = &mut Mode::Eval;
        let attn = self
            .attn_norm
            .add_forward(self.attn_out.forward(&ctx)?, x, 0.0, eval)?;
        let inter = self.intermediate.forward(&attn)?;
        let inter = match self.act {
            HiddenAct::Gelu => inter.gelu_erf()?,
            HiddenAct::GeluApproximate => inter.gelu()?,
            HiddenAct::Relu => inter.relu()?,
        };
        self.out_norm
            .add_forward(self.output.forward(&inter)?, &attn, 0.0, eval)
    }
}

/// A BERT encoder that returns the embedding output and every layer's output.
pub struct Encoder {
    embeddings: EmbeddingLayer,
    layers: Vec<Layer>,
    config: Config,
}

impl Encoder {
    /// Loads the encoder's weights; `vb` holds the checkpoint's tensors under transformers' names
    /// (`bert.embeddings.…`; see [`crate::nn::weights`]). `attention_dropout` is
    /// the configuration's `attention_probs_dropout_prob` (used only in training).
    pub fn load(vb: VarBuilder, config: &Config, attention_dropout: f64) -> Result<Self> {
        if config.num_attention_heads == 0
            || !config
                .hidden_size
                .is_multiple_of(config.num_attention_heads)
        {
            bail!(
                "config: hidden_size {} is not a multiple of num_attention_heads {}",
                config.hidden_size,
                config.num_attention_heads
            );
        }
        let vb = vb.pp("bert");
        let embeddings = EmbeddingLayer::load(vb.pp("embeddings"), config)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                Layer::load(
                    vb.pp(format!("encoder.layer.{i}")),
                    config,
                    attention_dropout as f32,
                )
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            embeddings,
            layers,
            config: config.clone(),
        })
    }

    /// The model's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The number of hidden states [`Encoder::forward_all`] returns (layers + 1).
    pub fn num_hidden_states(&self) -> usize {
        self.layers.len() + 1
    }

    /// Runs the encoder on a padded batch and returns every hidden state, each
    /// (batch, seq, hidden). `attention_mask` is 1 for real tokens and 0 for padding (u32);
    /// padded positions never influence real ones. Only the hidden states up to `up_to`
    /// (inclusive) are computed.
    pub fn forward_all(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
        up_to: usize,
    ) -> Result<Vec<Tensor>> {
        self.run(
            input_ids,
            token_type_ids,
            attention_mask,
            up_to,
            &mut Mode::Eval,
        )
    }

    /// Runs every layer in `mode` and returns every hidden state up to `up_to`.
    pub(crate) fn run(
        &self,
        input_ids: &Tensor,
        token_type_ids: &Tensor,
        attention_mask: &Tensor,
        up_to: usize,
        mode: &mut Mode,
    ) -> Result<Vec<Tensor>> {
        let mask = attention_mask.to_dtype(DType::F32)?;
        // (1 - mask) * f32::MIN, as transformers builds its extended attention mask.
        let mask = ((mask.ones_like()? - &mask)? * f64::from(kernels::MASKED))?
            .unsqueeze(1)?
            .unsqueeze(1)?;
        let mut x = self.embeddings.forward(input_ids, token_type_ids, mode)?;
        let mut states = vec![x.clone()];
        for layer in self.layers.iter().take(up_to) {
            x = layer.forward(&x, &mask, mode)?;
            states.push(x.clone());
        }
        Ok(states)
    }
}
