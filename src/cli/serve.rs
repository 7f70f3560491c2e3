//! `infogan serve`: a live explorer of a trained generator in the browser. One page,
//! compiled into the binary (`assets/explorer.html`), with a slider per continuous
//! code, a button per categorical value (labelled by the checkpoint's map when it has
//! one), a noise seed, and two views: one large image, or the paper's figure (every
//! categorical value against one continuous code). The page asks for each picture as
//! the controls move; the generator renders it here.
//!
//! Routes (nothing else is served; every error is a 4xx with a JSON message):
//! - `GET /`: the page;
//! - `GET /api/model`: the latent layout, the labels and the limits, as JSON;
//! - `POST /api/render`: a JSON `RenderRequest`, answered with a PNG.

use std::io::Read;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use rand::SeedableRng;
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Deserialize;
use tiny_http::{Header, Method, Request, Response, Server};

use super::sample::{MAX_SCALE, captions, render};
use crate::error::{Error, Result};
use crate::models::weights::{self, Networks};
use crate::output::grid::{default_scale, tile, with_captions};
use crate::output::png::Image;

#[derive(Args)]
pub struct ServeArgs {
    /// A checkpoint.safetensors written by `infogan train`
    #[arg(long, value_name = "FILE")]
    checkpoint: PathBuf,
    /// The TCP port to listen on (0: any free port; the address is printed)
    #[arg(long, default_value_t = 8000, value_name = "PORT")]
    port: u16,
    /// The address to listen on: loopback by default, so only this machine can connect. Another address (0.0.0.0)
    /// lets anyone who can reach this machine use the explorer; it has no login
    #[arg(long, default_value = "127.0.0.1", value_name = "ADDRESS")]
    host: String,
    /// Worker threads of the generator [default: all cores, or RAYON_NUM_THREADS]
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
}

/// The page, compiled in: no file is read at run time and nothing is fetched from
/// elsewhere.
const PAGE: &str = include_str!("../../assets/explorer.html");
/// The largest request body read: a render request is a few hundred bytes.
const MAX_BODY: usize = 4096;
/// The range of the continuous codes' sliders (the paper's figures sweep -2..2; the
/// prior is uniform in [-1, 1]).
const CONT_LIMIT: f32 = 2.0;
/// Columns of the grid view, at most.
const MAX_STEPS: usize = 20;
/// Columns of the grid view unless asked otherwise.
const GRID_STEPS: usize = 10;

/// What the page asks to see.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenderRequest {
    view: View,
    /// The value of the first categorical code (the single view).
    #[serde(default)]
    cat: usize,
    /// The continuous codes.
    cont: Vec<f32>,
    /// The noise vector's seed, as `infogan sample --seed`.
    seed: u64,
    /// Pixel magnification.
    scale: Option<usize>,
    /// The continuous code the grid view sweeps from -2 to 2 (0-based).
    #[serde(default)]
    code: usize,
    /// Columns of the grid view.
    steps: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum View {
    /// One image: the picture `infogan sample --cat K --cont ... --n 1 --seed S` writes.
    Single,
    /// Every categorical value (rows) against one continuous code (columns).
    Grid,
}

/// A reply that is not a picture: an HTTP status and a message for the page.
struct Refusal(u16, String);

impl Refusal {
    fn bad(message: impl Into<String>) -> Self {
        Refusal(400, message.into())
    }
}

pub fn run(args: ServeArgs) -> Result<()> {
    super::set_threads(args.threads)?;
    let mut model = weights::load(&args.checkpoint)?;
    let server = Server::http((args.host.as_str(), args.port)).map_err(|e| {
        Error::Invalid(format!(
            "cannot listen on {}:{} ({e}); pick another --port (0 takes any free one) or --host",
            args.host, args.port
        ))
    })?;
    let address =
        server.server_addr().to_ip().map_or_else(|| format!("{}:{}", args.host, args.port), |a| a.to_string());
    eprintln!("infogan: explorer of {} at http://{address}/ (Ctrl-C stops it)", args.checkpoint.display());
    for request in server.incoming_requests() {
        handle(request, &mut model);
    }
    Ok(())
}

/// Answers one request; a failure to send the answer (the browser went away) is not
/// an error of the server.
fn handle(mut request: Request, model: &mut Networks) {
    let started = Instant::now();
    let (method, url) = (request.method().clone(), request.url().to_string());
    let route = url.split('?').next().unwrap_or("");
    let reply = match (route, &method) {
        ("/", Method::Get) => Ok(Reply::new(PAGE.as_bytes().to_vec(), "text/html; charset=utf-8")),
        ("/api/model", Method::Get) => Ok(Reply::new(describe(model).into_bytes(), "application/json")),
        ("/api/render", Method::Post) => {
            read_body(&mut request).and_then(|body| parse_request(&body, model)).map(|r| {
                let image = picture(model, &r);
                let drawn = started.elapsed().as_secs_f64() * 1e3;
                let png = image.encode_fast();
                let encoded = started.elapsed().as_secs_f64() * 1e3 - drawn;
                Reply::new(png, "image/png")
                    .noting(format!(" (drawn in {drawn:.1} ms, PNG-encoded in {encoded:.1} ms)"))
            })
        }
        ("/" | "/api/model" | "/api/render", _) => Err(Refusal(405, format!("{method} is not allowed on {route}"))),
        _ => Err(Refusal(404, format!("no such page: {route} (the explorer serves /, /api/model and /api/render)"))),
    };
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let response = match reply {
        Ok(r) => {
            eprintln!("infogan: {method} {route} 200 in {ms:.1} ms{}", r.note);
            Response::from_data(r.body)
                .with_header(header("Content-Type", r.content_type))
                .with_header(header("X-Render-Ms", &format!("{ms:.1}")))
        }
        Err(Refusal(status, message)) => {
            eprintln!("infogan: {method} {route} {status}: {message}");
            Response::from_data(serde_json::json!({ "error": message }).to_string().into_bytes())
                .with_status_code(status)
                .with_header(header("Content-Type", "application/json"))
        }
    };
    let response = response
        .with_header(header("Cache-Control", "no-store"))
        .with_header(header("X-Content-Type-Options", "nosniff"))
        .with_header(header(
            "Content-Security-Policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src blob: data:; \
             connect-src 'self' blob:",
        ));
    let _ = request.respond(response);
}

struct Reply {
    body: Vec<u8>,
    content_type: &'static str,
    /// Said after the status in the server's log.
    note: String,
}

impl Reply {
    fn new(body: Vec<u8>, content_type: &'static str) -> Self {
        Reply { body, content_type, note: String::new() }
    }

    fn noting(self, note: String) -> Self {
        Reply { note, ..self }
    }
}

fn header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("header names and values are ASCII")
}

/// The body of a request, refused beyond `MAX_BODY` bytes.
fn read_body(request: &mut Request) -> std::result::Result<Vec<u8>, Refusal> {
    let too_large = || Refusal(413, format!("the request body is larger than {MAX_BODY} bytes"));
    if request.body_length().is_some_and(|n| n > MAX_BODY) {
        return Err(too_large());
    }
    let mut body = Vec::new();
    request
        .as_reader()
        .take(MAX_BODY as u64 + 1)
        .read_to_end(&mut body)
        .map_err(|e| Refusal::bad(format!("cannot read the request body: {e}")))?;
    if body.len() > MAX_BODY {
        return Err(too_large());
    }
    Ok(body)
}

/// A render request, checked against the model and the limits.
fn parse_request(body: &[u8], model: &Networks) -> std::result::Result<RenderRequest, Refusal> {
    let r: RenderRequest =
        serde_json::from_slice(body).map_err(|e| Refusal::bad(format!("not a valid render request: {e}")))?;
    let spec = &model.arch.latent;
    let values = spec.categorical.first().copied().unwrap_or(1);
    if r.cat >= values {
        return Err(Refusal::bad(format!("cat {} is out of range: the values are 0 to {}", r.cat, values - 1)));
    }
    if r.cont.len() != spec.continuous {
        return Err(Refusal::bad(format!(
            "cont has {} values, but this model has {} continuous codes",
            r.cont.len(),
            spec.continuous
        )));
    }
    if let Some(v) = r.cont.iter().find(|v| !v.is_finite() || v.abs() > CONT_LIMIT) {
        return Err(Refusal::bad(format!("cont value {v} is out of range: from -{CONT_LIMIT} to {CONT_LIMIT}")));
    }
    if let Some(s) = r.scale.filter(|s| !(1..=MAX_SCALE).contains(s)) {
        return Err(Refusal::bad(format!("scale {s} is out of range: from 1 to {MAX_SCALE}")));
    }
    if let Some(s) = r.steps.filter(|s| !(2..=MAX_STEPS).contains(s)) {
        return Err(Refusal::bad(format!("steps {s} is out of range: from 2 to {MAX_STEPS}")));
    }
    if r.view == View::Grid && r.code >= spec.continuous {
        return Err(Refusal::bad(if spec.continuous == 0 {
            "this model has no continuous code for the grid view to sweep".to_string()
        } else {
            format!("code {} is out of range: the continuous codes are 0 to {}", r.code, spec.continuous - 1)
        }));
    }
    Ok(r)
}

/// The picture a checked request asks for.
fn picture(model: &mut Networks, r: &RenderRequest) -> Image {
    let scale = r.scale.unwrap_or_else(|| default_scale(model.arch.dataset.image_shape().1));
    match r.view {
        View::Single => render(model, &[r.cat], 1, &r.cont, r.seed, scale),
        View::Grid => {
            let spec = &model.arch.latent;
            let (rows, cols) = (spec.categorical.first().copied().unwrap_or(1), r.steps.unwrap_or(GRID_STEPS));
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(r.seed);
            let latent = spec.traversal_around(r.code, rows, cols, (-CONT_LIMIT, CONT_LIMIT), &r.cont, &mut rng);
            let grid = tile(&model.generator.generate(&latent.z), rows, cols, scale);
            if spec.categorical.is_empty() {
                return grid;
            }
            let values: Vec<usize> = (0..rows).collect();
            // The captions' font is compiled in and tested; without it, the bare grid.
            with_captions(&grid, &captions(&values, model.labels.as_ref())).unwrap_or(grid)
        }
    }
}

/// `GET /api/model`: what the page needs to build its controls.
fn describe(model: &Networks) -> String {
    let spec = &model.arch.latent;
    let (c, h, w) = model.arch.dataset.image_shape();
    let labels = model.labels.as_ref();
    serde_json::json!({
        "dataset": model.arch.dataset.display_name(),
        "model": model.model.name(),
        "image_shape": [c, h, w],
        "noise": spec.noise,
        "categorical": spec.categorical.first().copied().unwrap_or(0),
        "continuous": spec.continuous,
        "labels": labels.map(|m| &m.labels),
        "label_accuracy": labels.map(|m| m.accuracy),
        "cont_limit": CONT_LIMIT,
        "default_scale": default_scale(h),
        "max_scale": MAX_SCALE,
        "grid_steps": GRID_STEPS,
        "max_steps": MAX_STEPS,
    })
    .to_string()
}
