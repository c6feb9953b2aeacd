//! A BERT encoder on candle that returns every hidden state.
//!
//! candle-transformers' `BertModel` returns only the last layer and keeps its layers private, so
//! this module re-implements the forward pass of Hugging Face's `BertModel` (absolute positions,
//! post-LayerNorm, GELU) and reuses its [`Config`]. The output follows transformers'
//! `output_hidden_states=True`: index 0 is the embedding output, index `i` the output of layer `i`.
//!
//! Weights load from the Hugging Face layout with or without the `bert.` prefix of task models,
//! and with the `gamma` / `beta` LayerNorm names of old checkpoints such as `bert-base-uncased`.

use anyhow::{bail, Result};
use candle_core::{DType, Module, Tensor};
use candle_nn::{embedding, linear, Embedding, LayerNorm, Linear, VarBuilder};
pub use candle_transformers::models::bert::{Config, HiddenAct};

fn layer_norm(size: usize, eps: f64, vb: VarBuilder) -> candle_core::Result<LayerNorm> {
    let (weight, bias) = if vb.contains_tensor("weight") {
        (vb.get(size, "weight")?, vb.get(size, "bias")?)
    } else {
        (vb.get(size, "gamma")?, vb.get(size, "beta")?)
    };
    Ok(LayerNorm::new(weight, bias, eps))
}

struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
}

impl Embeddings {
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
            norm: layer_norm(c.hidden_size, c.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    fn forward(&self, input_ids: &Tensor, token_type_ids: &Tensor) -> candle_core::Result<Tensor> {
        let seq_len = input_ids.dim(1)?;
        let positions = Tensor::arange(0u32, seq_len as u32, input_ids.device())?;
        let x = self
            .word
            .forward(input_ids)?
            .add(&self.token_type.forward(token_type_ids)?)?
            .broadcast_add(&self.position.forward(&positions)?)?;
        self.norm.forward(&x)
    }
}

struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
    heads: usize,
    act: HiddenAct,
}

impl Layer {
    fn load(vb: VarBuilder, c: &Config) -> candle_core::Result<Self> {
        let h = c.hidden_size;
        let att = vb.pp("attention");
        Ok(Self {
            query: linear(h, h, att.pp("self").pp("query"))?,
            key: linear(h, h, att.pp("self").pp("key"))?,
            value: linear(h, h, att.pp("self").pp("value"))?,
            attn_out: linear(h, h, att.pp("output").pp("dense"))?,
            attn_norm: layer_norm(h, c.layer_norm_eps, att.pp("output").pp("LayerNorm"))?,
            intermediate: linear(h, c.intermediate_size, vb.pp("intermediate").pp("dense"))?,
            output: linear(c.intermediate_size, h, vb.pp("output").pp("dense"))?,
            out_norm: layer_norm(h, c.layer_norm_eps, vb.pp("output").pp("LayerNorm"))?,
            heads: c.num_attention_heads,
            act: c.hidden_act,
        })
    }

    /// `x`: (batch, seq, hidden); `mask`: (batch, 1, 1, seq) additive.
    fn forward(&self, x: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, h) = x.dims3()?;
        let head_dim = h / self.heads;
        let split = |y: Tensor| -> candle_core::Result<Tensor> {
            y.reshape((b, t, self.heads, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(self.query.forward(x)?)?;
        let k = split(self.key.forward(x)?)?;
        let v = split(self.value.forward(x)?)?;
        let scores = (q.matmul(&k.t()?)? / (head_dim as f64).sqrt())?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h))?;
        let attn = self
            .attn_norm
            .forward(&(self.attn_out.forward(&ctx)? + x)?)?;
        let inter = self.intermediate.forward(&attn)?;
        let inter = match self.act {
            HiddenAct::Gelu => inter.gelu_erf()?,
            HiddenAct::GeluApproximate => inter.gelu()?,
            HiddenAct::Relu => inter.relu()?,
        };
        self.out_norm
            .forward(&(self.output.forward(&inter)? + attn)?)
    }
}

/// A BERT encoder that returns the embedding output and every layer's output.
pub struct Encoder {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    config: Config,
}

impl Encoder {
    /// Loads the encoder's weights; `vb` points at the checkpoint's root.
    pub fn load(vb: VarBuilder, config: &Config) -> Result<Self> {
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
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let embeddings = Embeddings::load(vb.pp("embeddings"), config)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::load(vb.pp(format!("encoder.layer.{i}")), config))
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
        let mask = attention_mask.to_dtype(DType::F32)?;
        // (1 - mask) * f32::MIN, as transformers builds its extended attention mask.
        let mask = ((mask.ones_like()? - &mask)? * f64::from(f32::MIN))?
            .unsqueeze(1)?
            .unsqueeze(1)?;
        let mut x = self.embeddings.forward(input_ids, token_type_ids)?;
        let mut states = vec![x.clone()];
        for layer in self.layers.iter().take(up_to) {
            x = layer.forward(&x, &mask)?;
            states.push(x.clone());
        }
        Ok(states)
    }
}
