//! The `infogan` binary end to end, on tiny synthetic datasets: resuming gives the
//! same bits as an uninterrupted run, so does the thread count, bad input gets a clear
//! error and a non-zero exit, Ctrl-C saves a checkpoint.

mod binary;

use std::path::Path;
use std::process::Command;

use binary::{add_test_split, assert_ok, bin, run, stderr, tiny_mnist, train};

/// Every tensor and metadata entry bit-identical, then the files byte-identical.
fn assert_same_checkpoint(a: &Path, b: &Path) {
    let (fa, fb) =
        (infogan::tensorfile::TensorFile::read(a).unwrap(), infogan::tensorfile::TensorFile::read(b).unwrap());
    assert_eq!(fa.metadata, fb.metadata, "metadata differs");
    assert_eq!(fa.tensors.keys().collect::<Vec<_>>(), fb.tensors.keys().collect::<Vec<_>>());
    for (name, ta) in &fa.tensors {
        let tb = &fb.tensors[name];
        let same = ta.shape() == tb.shape() && ta.iter().zip(tb.iter()).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "tensor {name} differs");
    }
    assert!(std::fs::read(a).unwrap() == std::fs::read(b).unwrap(), "files differ byte for byte");
}

#[test]
fn resume_gives_the_bits_of_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_mnist(tmp.path(), 32);
    let (whole, split) = (tmp.path().join("whole"), tmp.path().join("split"));
    // 4 steps per epoch: the interrupted run stops mid-epoch and resumes across an
    // epoch boundary.
    assert_ok(&train(&data, &whole, &["--max-steps", "7", "--log-every", "1"]), "uninterrupted run");
    assert_ok(&train(&data, &split, &["--max-steps", "3", "--log-every", "1"]), "first half");
    let resumed = train(&data, &split, &["--max-steps", "7", "--resume", "--log-every", "1"]);
    assert_ok(&resumed, "resumed run");
    assert!(stderr(&resumed).contains("resuming from"), "{}", stderr(&resumed));
    assert_same_checkpoint(&whole.join("checkpoint.safetensors"), &split.join("checkpoint.safetensors"));
    // The log has every step once.
    let log = std::fs::read_to_string(split.join("losses.csv")).unwrap();
    let steps: Vec<&str> = log.lines().skip(1).map(|l| l.split(',').nth(1).unwrap()).collect();
    assert_eq!(steps, ["1", "2", "3", "4", "5", "6", "7"], "{log}");
    for file in ["samples/epoch_002.png", "traversals/epoch_002_cont_2.png", "losses.png"] {
        assert!(split.join(file).is_file(), "{file} missing");
    }
}

#[test]
fn one_and_two_threads_give_the_same_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_mnist(tmp.path(), 32);
    let (one, two) = (tmp.path().join("one"), tmp.path().join("two"));
    assert_ok(&train(&data, &one, &["--max-steps", "3", "--threads", "1"]), "1 thread");
    assert_ok(&train(&data, &two, &["--max-steps", "3", "--threads", "2"]), "2 threads");
    assert_same_checkpoint(&one.join("checkpoint.safetensors"), &two.join("checkpoint.safetensors"));
}

#[test]
fn bad_input_gets_a_clear_error_and_no_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_mnist(tmp.path(), 32);
    let out_dir = tmp.path().join("run");

    // A sparse file of zeros: its header length (0) is refused before the rest is read.
    let zeros = tmp.path().join("zeros.safetensors");
    std::fs::File::create(&zeros).unwrap().set_len(1 << 30).unwrap();
    let sample_from = |checkpoint: &str| -> Vec<String> {
        ["sample", "--checkpoint", checkpoint, "--out", "x.png"].map(String::from).to_vec()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (sample_from("/dev/zero"), "not a regular file"),
        (sample_from(zeros.to_str().unwrap()), "header length does not fit"),
        (vec!["train".into(), "--dataset".into(), "svhn".into()], "invalid value 'svhn'"),
        (
            vec!["train".into(), "--batch-size".into(), "0".into(), "--data-dir".into(), data.display().to_string()],
            "--batch-size 0 is too small",
        ),
        (
            vec!["train".into(), "--resume".into(), "--out".into(), out_dir.display().to_string()],
            "there is no checkpoint",
        ),
        (vec!["train".into(), "--data-dir".into(), "/nonexistent".into()], "make data DATASET=mnist"),
        (
            vec![
                "sample".into(),
                "--checkpoint".into(),
                "/nonexistent.safetensors".into(),
                "--out".into(),
                "x.png".into(),
            ],
            "cannot read /nonexistent.safetensors",
        ),
        (vec!["bench".into(), "--lr-g=-1".into()], "learning rates must be positive"),
        (vec!["train".into(), "--categorical".into(), "10,1".into()], "at least 2"),
        (
            vec![
                "train".into(),
                "--max-steps".into(),
                "0".into(),
                "--batch-size".into(),
                "8".into(),
                "--data-dir".into(),
                data.display().to_string(),
                "--out".into(),
                out_dir.display().to_string(),
            ],
            "--max-steps must be at least 1",
        ),
        (vec!["train".into(), "--resume".into(), "--overwrite".into()], "cannot be used with"),
    ];
    for (args, expected) in cases {
        let out = bin().args(&args).output().unwrap();
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(expected), "{args:?}: expected {expected:?} in:\n{err}");
        assert!(!err.contains("panicked"), "{args:?} panicked:\n{err}");
    }

    // A real checkpoint, then broken copies of it.
    assert_ok(&train(&data, &out_dir, &["--max-steps", "1"]), "training");
    let good = std::fs::read(out_dir.join("checkpoint.safetensors")).unwrap();
    let broken = tmp.path().join("broken.safetensors");
    let sample = |path: &Path| run(&["sample", "--checkpoint", path.to_str().unwrap(), "--out", "/dev/null"]);

    std::fs::write(&broken, &good[..good.len() / 2]).unwrap();
    let out = sample(&broken);
    assert!(!out.status.success() && stderr(&out).contains("not a valid safetensors file"), "{}", stderr(&out));

    std::fs::write(&broken, b"not a checkpoint at all").unwrap();
    let out = sample(&broken);
    assert!(!out.status.success() && stderr(&out).contains("broken.safetensors"), "{}", stderr(&out));

    // The good checkpoint with `from` replaced by `to` in its configuration, as `broken`.
    let edit_config = |from: &str, to: &str| {
        let mut file = infogan::tensorfile::TensorFile::read(&out_dir.join("checkpoint.safetensors")).unwrap();
        let config = file.metadata["config"].replace(from, to);
        assert_ne!(config, file.metadata["config"], "{from} not in the configuration");
        file.metadata.insert("config".into(), config);
        file.write(&broken).unwrap();
    };

    // The same tensors under the configuration of another architecture: another
    // dataset (other layers), or another latent size (other shapes).
    for (from, to) in [("\"mnist\"", "\"cifar10\""), ("\"noise\":62", "\"noise\":10")] {
        edit_config(from, to);
        let out = sample(&broken);
        assert!(!out.status.success() && stderr(&out).contains("another architecture"), "{}", stderr(&out));
    }

    // Configurations edited into invalid ones: refused on load, by the same check as
    // the flags, before any network is built.
    let edits = [
        ("\"batch_size\":8", "\"batch_size\":0", "--batch-size 0 is too small"),
        ("\"batch_size\":8", "\"batch_size\":1", "--batch-size 1 is too small"),
        ("\"categorical\":[10]", "\"categorical\":[0,10]", "a code of 0 values"),
        ("\"noise\":62", "\"noise\":1000000000", "larger than the limit"),
        ("\"continuous\":2", "\"continuous\":100000000", "larger than the limit"),
        ("\"noise\":62", "\"noise\":1000000000000000000", "larger than the limit"),
        ("\"lr_d\":0.001", "\"lr_d\":-1.0", "learning rates must be positive"),
        ("\"lambda_cat\":0.5", "\"lambda_cat\":-1e30", "--lambda-cat"),
    ];
    let resume_from = |path: &Path| {
        let dir = tmp.path().join("edited");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(path, dir.join("checkpoint.safetensors")).unwrap();
        train(&data, &dir, &["--resume", "--max-steps", "2"])
    };
    for (from, to, expected) in edits {
        edit_config(from, to);
        let out = resume_from(&broken);
        assert!(!out.status.success() && stderr(&out).contains(expected), "{to}: {}", stderr(&out));
        assert!(!stderr(&out).contains("panicked"), "{to}: {}", stderr(&out));
    }
    for (from, to) in [("\"categorical\":[10]", "\"categorical\":[0,10]"), ("\"noise\":62", "\"noise\":1000000000")] {
        edit_config(from, to);
        for args in [vec!["eval", "--data-dir", data.to_str().unwrap()], vec!["interpolate", "--out-dir", "/tmp"]] {
            let mut args: Vec<&str> = args;
            args.extend(["--checkpoint", broken.to_str().unwrap()]);
            let out = run(&args);
            assert!(
                !out.status.success() && stderr(&out).contains("invalid configuration"),
                "{args:?}: {}",
                stderr(&out)
            );
        }
    }

    // Damaged weights: flipped bytes fail the checksum; NaN weights (with a checksum
    // that matches them) are refused by name.
    let mut flipped = good.clone();
    let len = flipped.len();
    for i in 0..200 {
        flipped[len - 1 - 37 * i] ^= 0x40;
    }
    std::fs::write(&broken, &flipped).unwrap();
    let out = sample(&broken);
    assert!(!out.status.success() && stderr(&out).contains("do not match the checksum"), "{}", stderr(&out));
    let mut file = infogan::tensorfile::TensorFile::read(&out_dir.join("checkpoint.safetensors")).unwrap();
    file.tensors.get_mut("generator.fc1.weight").unwrap()[[0, 0]] = f32::NAN;
    file.write(&broken).unwrap();
    for out in [sample(&broken), resume_from(&broken)] {
        let err = stderr(&out);
        assert!(!out.status.success() && err.contains("generator.fc1.weight holds 1 of"), "{err}");
    }

    // Requests too large for any machine are errors, not allocator aborts.
    let ckpt = out_dir.join("checkpoint.safetensors");
    let ckpt = ckpt.to_str().unwrap();
    for (args, expected) in [
        (vec!["sample", "--checkpoint", ckpt, "--n", "100000000", "--out", "x.png"], "--n 100000000 must be from"),
        (vec!["interpolate", "--checkpoint", ckpt, "--scale", "100000"], "--scale 100000 must be from 1 to 16"),
        (vec!["sample", "--checkpoint", ckpt, "--scale", "0", "--out", "x.png"], "--scale 0 must be from 1 to 16"),
        (vec!["bench", "--batch-size", "100000"], "larger than the limit of 8192"),
    ] {
        let out = run(&args);
        assert!(!out.status.success() && stderr(&out).contains(expected), "{args:?}: {}", stderr(&out));
    }

    // --resume with a flag that contradicts the checkpoint, or that does not parse.
    for (flag, value, expected) in [
        ("--noise", "10", "--noise 10 (the checkpoint has 62)"),
        ("--categorical", "abc", "--categorical \"abc\""),
        ("--categorical", "1", "at least 2"),
        ("--diffaug", "blur", "--diffaug \"blur\""),
    ] {
        let out = train(&data, &out_dir, &["--resume", flag, value]);
        assert!(!out.status.success() && stderr(&out).contains(expected), "{flag} {value}: {}", stderr(&out));
    }

    // A data folder that cannot be read is not reported as a missing one.
    let not_a_dir = tmp.path().join("a-file");
    std::fs::write(&not_a_dir, b"x").unwrap();
    let out = train(&not_a_dir, &tmp.path().join("r2"), &[]);
    let err = stderr(&out);
    assert!(!out.status.success() && err.contains("cannot read") && !err.contains("make data"), "{err}");
}

#[test]
fn a_diverging_run_stops_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_mnist(tmp.path(), 32);
    let out = train(&data, &tmp.path().join("nan"), &["--lr-d", "1e30", "--lr-g", "1e30", "--max-steps", "40"]);
    assert!(!out.status.success(), "training with absurd learning rates succeeded");
    let err = stderr(&out);
    assert!(err.contains("non-finite") && err.contains("--lr-d"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // It says whether a checkpoint is left, and it is.
    let left = tmp.path().join("nan").join("checkpoint.safetensors").is_file();
    let says = if left { "is still in" } else { "No checkpoint was written" };
    assert!(err.contains(says), "checkpoint left: {left}; {err}");
}

#[test]
fn sample_and_bench_produce_their_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_mnist(tmp.path(), 32);
    let run_dir = tmp.path().join("run");
    assert_ok(&train(&data, &run_dir, &["--max-steps", "2"]), "training");
    let png = tmp.path().join("sample.png");
    let ckpt = run_dir.join("checkpoint.safetensors");
    let out = run(&[
        "sample",
        "--checkpoint",
        ckpt.to_str().unwrap(),
        "--cat",
        "3",
        "--cont",
        "-1,0.5",
        "--n",
        "5",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert_ok(&out, "sample");
    let img = infogan::output::png::Image::load(&png).unwrap();
    // 2x by default, a 2-pixel line between cells.
    assert_eq!((img.width, img.height), (5 * 58 + 2, 58 + 2));

    let out = run(&["bench", "--steps", "2", "--batch-size", "8", "--threads", "1"]);
    assert_ok(&out, "bench");
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(line["dataset"], "mnist");
    assert_eq!(line["batch_size"], 8);
    assert_eq!(line["threads"], 1);
    assert!(line["images_per_s"].as_f64().unwrap() > 0.0);
    assert!(line["gemm_gflop_per_step"].as_f64().unwrap() > 0.0, "no GEMM work counted: {line}");
    assert!(line["gemm_gflops_at_median"].as_f64().unwrap() > 0.0, "no GEMM rate: {line}");
    // The products over unfolded batches of one step, each (geometry, other side,
    // images): D's convolutions see 16 images in D's step (backward: the first layer's
    // weight gradient alone) and 8 in G's (backward: dx alone); G's transposed ones 8
    // images in each of forward, dx and dweight.
    let geom = |c, h| infogan::kernels::im2col::ConvGeom { c, h, w: h, kh: 4, kw: 4, stride: 2, padding: 1 };
    let products = [(geom(1, 28), 64, 24 + 16 + 8), (geom(64, 14), 128, 24 + 16 + 24)]
        .into_iter()
        .chain([(geom(64, 14), 128, 3 * 8), (geom(1, 28), 64, 3 * 8)]);
    let padding_macs: usize = products.map(|(g, other, images)| g.c * g.padding_reads() * other * images).sum();
    let padding = line["padding_gflop_per_step"].as_f64().unwrap();
    assert!((padding - 2.0 * padding_macs as f64 / 1e9).abs() <= 0.0051, "padding work {padding}: {line}");

    // --profile adds each phase's time; INFOGAN_ISA caps the instruction set.
    let out = bin()
        .args(["bench", "--steps", "2", "--batch-size", "8", "--threads", "1", "--profile"])
        .env("INFOGAN_ISA", "portable")
        .output()
        .unwrap();
    assert_ok(&out, "bench --profile");
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(line["isa"], "portable");
    assert!(line["profile_ms"]["gemm"].as_f64().unwrap() > 0.0, "{line}");
    assert!(line["profile_ms"]["batchnorm"].as_f64().unwrap() > 0.0, "{line}");
}

/// `infogan score` trains its classifier on first use, caches it beside the data,
/// and rates the real test images and a generator on the same scale.
#[test]
fn score_rates_real_images_and_a_generator() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_mnist(tmp.path(), 64);
    add_test_split(&data);
    let run_dir = tmp.path().join("run");
    assert_ok(&train(&data, &run_dir, &["--max-steps", "2", "--diffaug", "translation,cutout"]), "training");
    let d = data.to_str().unwrap();
    let real = run(&["score", "--real", "--dataset", "mnist", "--data-dir", d]);
    assert_ok(&real, "score --real");
    assert!(stderr(&real).contains("training the scorer"), "{}", stderr(&real));
    assert!(data.join("scorer.safetensors").is_file(), "the scorer is cached beside the data");
    let ckpt = run_dir.join("checkpoint.safetensors");
    let generated = run(&["score", "--checkpoint", ckpt.to_str().unwrap(), "--data-dir", d, "--images", "30"]);
    assert_ok(&generated, "score --checkpoint");
    assert!(!stderr(&generated).contains("training the scorer"), "the cached scorer is reused");
    for (out, images) in [(&real, 64), (&generated, 30)] {
        let line: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
        assert_eq!(line["images"], images, "{line}");
        for key in ["frechet_distance", "inception_score", "diversity"] {
            let v = line[key].as_f64().unwrap_or(f64::NAN);
            assert!(v.is_finite() && v >= 0.0, "{key} = {v}: {line}");
        }
        assert!(line["inception_score"].as_f64().unwrap() >= 1.0 - 1e-9, "{line}");
    }
    let bad = run(&["train", "--diffaug", "colour", "--data-dir", d]);
    assert!(!bad.status.success() && stderr(&bad).contains("--diffaug"), "{}", stderr(&bad));
}

#[test]
fn interpolate_plot_and_export_write_their_files() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_mnist(tmp.path(), 32);
    let run_dir = tmp.path().join("run");
    assert_ok(&train(&data, &run_dir, &["--max-steps", "4", "--log-every", "1"]), "training");
    let ckpt = run_dir.join("checkpoint.safetensors");
    let ckpt = ckpt.to_str().unwrap();

    let interp = tmp.path().join("interp");
    let out = run(&[
        "interpolate",
        "--checkpoint",
        ckpt,
        "--steps",
        "5",
        "--sweep",
        "cont2",
        "--out-dir",
        interp.to_str().unwrap(),
    ]);
    assert_ok(&out, "interpolate");
    for f in ["interp_linear.png", "interp_slerp.png", "interp_linear.gif", "interp_slerp.gif", "sweep_cont2.gif"] {
        assert!(interp.join(f).is_file(), "{f} missing");
    }
    let gif = std::fs::read(interp.join("sweep_cont2.gif")).unwrap();
    assert!(gif.starts_with(b"GIF89a"), "not a GIF");
    let out = run(&["interpolate", "--checkpoint", ckpt, "--sweep", "cont9", "--out-dir", interp.to_str().unwrap()]);
    assert!(!out.status.success() && stderr(&out).contains("cat1, cont1, cont2"), "{}", stderr(&out));

    let chart = tmp.path().join("info.png");
    let out = run(&["plot", run_dir.to_str().unwrap(), run_dir.to_str().unwrap(), "--out", chart.to_str().unwrap()]);
    assert_ok(&out, "plot");
    assert!(infogan::output::png::Image::load(&chart).unwrap().width > 0);
    assert!(run_dir.join("progress.gif").is_file(), "progress.gif missing");

    #[cfg(feature = "onnx")]
    {
        let onnx = tmp.path().join("g.onnx");
        let check = tmp.path().join("check.safetensors");
        let out = run(&[
            "export",
            "--checkpoint",
            ckpt,
            "--out",
            onnx.to_str().unwrap(),
            "--check-vector",
            check.to_str().unwrap(),
        ]);
        assert_ok(&out, "export");
        let file = infogan::tensorfile::TensorFile::read(&check).unwrap();
        assert_eq!(file.tensors["latent"].shape(), &[8, 74]);
        assert_eq!(file.tensors["image"].shape(), &[8, 1, 28, 28]);
        assert!(std::fs::metadata(&onnx).unwrap().len() > 1_000_000, "the ONNX file holds the weights");
        let out = run(&["export", "--checkpoint", ckpt, "--out", "/nonexistent/dir/g.onnx"]);
        assert!(!out.status.success() && stderr(&out).contains("/nonexistent/dir"), "{}", stderr(&out));
    }
}

#[cfg(unix)]
/// Starts a training of 1,000 epochs into `out_dir` and returns once it has logged a
/// few steps.
fn start_long_training(data: &Path, out_dir: &Path) -> std::process::Child {
    let child = bin()
        .args(["train", "--batch-size", "8", "--data-dir", data.to_str().unwrap(), "--out", out_dir.to_str().unwrap()])
        .args(["--epochs", "1000", "--log-every", "1", "--no-score"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let log = out_dir.join("losses.csv");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&log).map_or(0, |s| s.lines().count()) < 4 {
        assert!(started.elapsed().as_secs() < 120, "training did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child
}

/// A fresh run does not replace an earlier one unless told to, two trainings never
/// share a folder, and the temporary files of dead writers are cleared.
#[test]
fn a_run_folder_is_neither_replaced_nor_shared() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_mnist(tmp.path(), 32);
    let out_dir = tmp.path().join("run");
    assert_ok(&train(&data, &out_dir, &["--max-steps", "2"]), "first run");
    let again = train(&data, &out_dir, &["--max-steps", "2"]);
    assert!(!again.status.success(), "a fresh run replaced the earlier one");
    assert!(
        stderr(&again).contains("already holds a run") && stderr(&again).contains("--overwrite"),
        "{}",
        stderr(&again)
    );
    let stale = out_dir.join(".checkpoint.safetensors.tmp999999999");
    std::fs::write(&stale, b"left by a killed run").unwrap();
    assert_ok(&train(&data, &out_dir, &["--max-steps", "1", "--overwrite", "--log-every", "1"]), "--overwrite");
    let log = std::fs::read_to_string(out_dir.join("losses.csv")).unwrap();
    assert_eq!(log.lines().count(), 2, "the new log kept the old run's rows: {log}");
    assert!(!stale.exists(), "a dead process's temporary file stayed");

    let busy_dir = tmp.path().join("busy");
    let mut child = start_long_training(&data, &busy_dir);
    let second = train(&data, &busy_dir, &["--max-steps", "1", "--overwrite"]);
    // SAFETY: sending a signal to our own child process, whose pid we hold.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let first = child.wait().unwrap();
    assert!(!second.status.success(), "two trainings shared one folder");
    let e = stderr(&second);
    assert!(e.contains("is in use") && e.contains(&format!("process {}", child.id())), "{e}");
    assert_eq!(first.code(), Some(75), "the first training did not stop cleanly");
}

/// Starts a long training, sends `signal` once a few steps are logged, and checks
/// that the run saved its checkpoint, said so, exited with the "stopped, resumable"
/// status, and resumes from it.
fn signal_saves_a_checkpoint_and_resumes(signal: i32) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_mnist(tmp.path(), 64);
    let out_dir = tmp.path().join("run");
    let child = start_long_training(&data, &out_dir);
    // SAFETY: sending a signal to our own child process, whose pid we hold.
    unsafe {
        libc::kill(child.id() as i32, signal);
    }
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(75), "signal {signal}: exit status {:?}: {err}", out.status);
    assert!(err.contains("interrupted at step"), "{err}");
    assert!(out_dir.join("checkpoint.safetensors").is_file(), "no checkpoint after signal {signal}");
    let resumed = run(&[
        "train",
        "--resume",
        "--out",
        out_dir.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
        "--max-steps",
        "1",
    ]);
    assert!(resumed.status.success() && stderr(&resumed).contains("already at step"), "{}", stderr(&resumed));
}

#[test]
fn ctrl_c_saves_a_checkpoint_and_exits_as_stopped() {
    signal_saves_a_checkpoint_and_resumes(libc::SIGINT);
}

/// Schedulers stop jobs with SIGTERM; it must not lose the steps since the last epoch.
#[test]
fn sigterm_saves_a_checkpoint_like_ctrl_c() {
    signal_saves_a_checkpoint_and_resumes(libc::SIGTERM);
}

/// The built example program `name` (cargo test builds the examples next to the
/// test binaries' folder).
fn example(name: &str) -> Command {
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    let path = deps.parent().unwrap().join("examples").join(name);
    assert!(path.is_file(), "{} is not built: run the whole `cargo test`, which builds the examples", path.display());
    Command::new(path)
}

#[test]
fn the_examples_train_save_and_sample_with_the_library() {
    let dir = tempfile::tempdir().unwrap();
    let data = tiny_mnist(dir.path(), 64);
    let ckpt = dir.path().join("example.safetensors");
    let out = example("train_steps").args([data.as_os_str(), ckpt.as_os_str(), "6".as_ref()]).output().unwrap();
    assert_ok(&out, "examples/train_steps");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("step   5: d_loss"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let png = dir.path().join("grid.png");
    let out = example("sample_grid").args([ckpt.as_os_str(), png.as_os_str()]).output().unwrap();
    assert_ok(&out, "examples/sample_grid");
    let grid = infogan::output::png::Image::load(&png).unwrap();
    assert!(grid.width > 8 * 28 && grid.height > 10 * 28, "grid {}x{}", grid.width, grid.height);
    // The checkpoint is a full one: the binary resumes it.
    let out = run(&["sample", "--checkpoint", ckpt.to_str().unwrap(), "--out", png.to_str().unwrap()]);
    assert_ok(&out, "infogan sample on the example's checkpoint");
}

/// The code-to-label map: stored at the end of training and by `eval`, used by
/// `sample --label` and the sample captions, carried into the ONNX metadata.
#[test]
fn labels_are_stored_and_drawn_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_mnist(tmp.path(), 32);
    let bare = tmp.path().join("bare");
    assert_ok(&train(&data, &bare, &["--max-steps", "2"]), "training without a test split");
    let bare_ckpt = bare.join("checkpoint.safetensors");
    let file = infogan::tensorfile::TensorFile::read(&bare_ckpt).unwrap();
    assert!(!file.metadata.contains_key("labels"), "no test split, no map");
    let png = tmp.path().join("s.png");
    let (b, p) = (bare_ckpt.to_str().unwrap(), png.to_str().unwrap());
    let out = run(&["sample", "--checkpoint", b, "--label", "7", "--out", p]);
    assert!(!out.status.success() && stderr(&out).contains("infogan eval --checkpoint"), "{}", stderr(&out));

    add_test_split(&data);
    let run_dir = tmp.path().join("run");
    assert_ok(&train(&data, &run_dir, &["--max-steps", "2"]), "training");
    let ckpt = run_dir.join("checkpoint.safetensors");
    let c = ckpt.to_str().unwrap();
    let labels = |path: &Path| -> serde_json::Value {
        let file = infogan::tensorfile::TensorFile::read(path).unwrap();
        serde_json::from_str(&file.metadata["labels"]).expect("a JSON map")
    };
    let stored = labels(&ckpt);
    assert_eq!(stored["labels"].as_array().unwrap().len(), 10, "{stored}");
    assert_eq!(stored["test_images"], 32, "{stored}");

    // eval stores the same map again (the weights untouched); --no-store leaves the file as it is.
    let before = std::fs::read(&ckpt).unwrap();
    let out = run(&[
        "eval",
        "--checkpoint",
        c,
        "--data-dir",
        data.to_str().unwrap(),
        "--no-store",
        "--stability-images",
        "0",
    ]);
    assert_ok(&out, "eval --no-store");
    assert!(std::fs::read(&ckpt).unwrap() == before, "--no-store changed the checkpoint");
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["code_stability"], serde_json::json!({}), "--stability-images 0 leaves it out");
    let out = run(&["eval", "--checkpoint", c, "--data-dir", data.to_str().unwrap(), "--stability-images", "30"]);
    assert_ok(&out, "eval");
    assert!(stderr(&out).contains("stored the code-to-label map"), "{}", stderr(&out));
    let line: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(labels(&ckpt)["labels"], stored["labels"]);
    assert_eq!(line["code_to_label"]["0"], stored["labels"][0], "{line}");
    // Sweeping a code over -2..2 passes through -1..1: the wider range can only keep fewer images.
    for code in ["cont1", "cont2"] {
        let (within_1, within_2) =
            (&line["code_stability"][code]["within_1"], &line["code_stability"][code]["within_2"]);
        let (w1, w2) = (within_1.as_f64().unwrap(), within_2.as_f64().unwrap());
        assert!((0.0..=1.0).contains(&w1) && w2 <= w1 && w2 >= 0.0, "{code}: {w1} {w2}");
    }

    // --label draws the value mapped to it: the same picture as --cat.
    let label = stored["labels"][4].as_str().unwrap().to_string();
    let by_cat = tmp.path().join("cat.png");
    let out = run(&["sample", "--checkpoint", c, "--label", &label, "--n", "3", "--out", p]);
    assert_ok(&out, "sample --label");
    assert_ok(
        &run(&["sample", "--checkpoint", c, "--cat", "4", "--n", "3", "--out", by_cat.to_str().unwrap()]),
        "--cat",
    );
    assert!(std::fs::read(&png).unwrap() == std::fs::read(&by_cat).unwrap(), "--label {label} is not --cat 4");
    let out = run(&["sample", "--checkpoint", c, "--label", "horse", "--out", p]);
    let e = stderr(&out);
    assert!(!out.status.success() && e.contains("\"horse\" is not a label") && e.contains("\"0\", \"1\""), "{e}");

    // A row per value: captions on the left unless --plain.
    assert_ok(&run(&["sample", "--checkpoint", c, "--n", "2", "--out", p]), "sample");
    let captioned = infogan::output::png::Image::load(&png).unwrap();
    assert_ok(&run(&["sample", "--checkpoint", c, "--n", "2", "--plain", "--scale", "1", "--out", p]), "--plain");
    let plain = infogan::output::png::Image::load(&png).unwrap();
    assert_eq!((plain.width, plain.height), (2 * 30 + 2, 10 * 30 + 2));
    assert!(
        captioned.width > 2 * 58 + 2 + 20 && captioned.height == 10 * 58 + 2,
        "{}x{}",
        captioned.width,
        captioned.height
    );

    #[cfg(feature = "onnx")]
    {
        let onnx = tmp.path().join("g.onnx");
        assert_ok(&run(&["export", "--checkpoint", c, "--out", onnx.to_str().unwrap()]), "export");
        let bytes = std::fs::read(&onnx).unwrap();
        let find = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        let expected = serde_json::to_string(&stored["labels"]).unwrap();
        assert!(find(b"code_to_label") && find(expected.as_bytes()), "the map {expected} is not in the ONNX metadata");
    }
}

/// `--recipe paper` starts from the InfoGAN authors' settings; flags beside it win,
/// and `--resume` accepts only the recipe the run started from.
#[test]
fn the_paper_recipe_sets_the_authors_settings_and_flags_override_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_mnist(tmp.path(), 32);
    let out = tmp.path().join("run");
    // The helper's --batch-size 8 overrides the recipe's 128, as any flag does.
    assert_ok(&train(&data, &out, &["--recipe", "paper", "--lambda-cat", "0.5", "--max-steps", "1"]), "training");
    let file = infogan::tensorfile::TensorFile::read(&out.join("checkpoint.safetensors")).unwrap();
    let c: serde_json::Value = serde_json::from_str(&file.metadata["config"]).unwrap();
    let f = |key: &str| c[key].as_f64().unwrap();
    assert_eq!((f("lr_d"), f("lr_g"), f("lambda_cont"), f("lambda_cat")), (2e-4, 1e-3, 1.0, 0.5));
    assert_eq!(
        (c["batch_size"].as_u64(), c["mode_seeking"].as_f64(), c["cont_std"].as_str()),
        (Some(8), Some(0.0), Some("fixed"))
    );
    let again = ["--recipe", "paper", "--lambda-cat", "0.5", "--resume", "--max-steps", "2"];
    assert_ok(&train(&data, &out, &again), "resuming with the same recipe");
    let other = train(&data, &out, &["--recipe", "default", "--resume", "--max-steps", "3"]);
    assert!(!other.status.success() && stderr(&other).contains("--recipe default"), "{}", stderr(&other));
}
