//! infogan: InfoGAN and plain GANs trained on a CPU, with every layer's forward and
//! backward pass written by hand.
//!
//! The crate is layered, and each layer only uses the ones before it:
//! `data`, `kernels` (GEMM, im2col) -> `layers`, `loss`, `optim` -> `models` ->
//! `train`, `eval`, `score` -> `output` (PNG, GIF, CSV, charts, ONNX) -> `cli`.
//! (`tensorfile`, `files`, `error`, `init`, `profile` and `testutil` are utilities used at every level.)
//!
//! # Shape legend
//! Comments write tensor shapes with these letters:
//! - `N`: batch size (images or latent vectors in a mini-batch)
//! - `C`, `C_in`, `C_out`: channels
//! - `H`, `W`: image height and width; `H_out`, `W_out` after a layer
//! - `KH`, `KW`: kernel height and width
//! - `P`: positions per image, `H*W` (`P_out = H_out*W_out`)
//! - `F`, `F_in`, `F_out`: features of a fully connected layer
//! - `K`: number of classes (categorical logits)
//! - `M`: values per channel that batch norm averages over, `N*P`
//!
//! Images are `[N, C, H, W]` and features `[N, F]`, row-major, as in PyTorch.

pub mod cli;
pub mod data;
pub mod error;
pub mod eval;
pub mod files;
pub mod init;
pub mod kernels;
pub mod layers;
pub mod loss;
pub mod models;
pub mod optim;
pub mod output;
pub mod profile;
pub mod score;
pub mod tensorfile;
pub mod testutil;
pub mod train;
