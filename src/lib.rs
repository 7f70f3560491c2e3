//! infogan: InfoGAN and plain GANs trained on a CPU, with every layer's forward and
//! backward pass written by hand.
//!
//! The crate is a library, and the `infogan` binary a thin layer over it. It is
//! layered, and each layer only uses the ones before it:
//!
//! - `data`: the datasets' official files, checked, and the shuffled batches;
//!   `kernels`: the GEMM (our BLIS-style micro-kernels, matrixmultiply as the
//!   reference) and im2col / col2im;
//! - `layers` (the `Layer` trait and one file per layer), `loss`, `optim` (Adam);
//! - `models`: the latent layout and paths through it, `Sequential`, the paper's
//!   networks, reading a trained model (`models::weights`);
//! - `train` (the configuration and its defaults, one step, the run with its
//!   `Observer`, checkpoints), `eval` (the categorical code as a classifier), `score`
//!   (image quality);
//! - `output`: PNG, grids, GIF, CSV, charts, ONNX, and the run folder's files;
//! - `cli`: the command line, which nothing else imports.
//!
//! (`tensorfile`, `files`, `error`, `init`, `profile`, `testutil`, `buffers` (the
//! recycled storage of a step's tensors) and `collective`, the
//! sums over shards of a batch and across the ranks of an MPI job, are utilities used
//! at every level.)
//!
//! A run in a few lines: `train::TrainConfig::defaults`, `train::Trainer::new`,
//! `train::run::run`, `train::checkpoint::save`; see `examples/`.
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

pub mod buffers;
pub mod cli;
pub mod collective;
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
