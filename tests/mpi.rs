//! Data-parallel training under `mpirun` (the cargo feature `mpi`): any number of
//! ranks that shares a run's shards trains the bits of one process, a run resumes on
//! another number of ranks, a dead or hung rank stops the job with a message, and
//! SIGTERM on the launcher stops every rank after a checkpoint.
//!
//! Each test says SKIPPED and passes when the binary was built without the feature or
//! `mpirun` is not installed (`make test` builds with the feature where MPI is).

// Shared with tests/cli.rs, which uses all of it.
#[allow(dead_code)]
mod binary;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use binary::{assert_ok, bin, stderr, tiny_mnist};

/// Why the MPI tests cannot run here, if they cannot.
fn skip_reason() -> Option<&'static str> {
    if !cfg!(feature = "mpi") {
        return Some("the binary was built without --features mpi");
    }
    let found = Command::new("mpirun").arg("--version").output().is_ok_and(|o| o.status.success());
    (!found).then_some("mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev)")
}

/// One job at a time: several at once on two cores would make the timings of the
/// signal tests a matter of luck.
static ONE_JOB: std::sync::Mutex<()> = std::sync::Mutex::new(());

macro_rules! require_mpi {
    () => {
        if let Some(why) = skip_reason() {
            eprintln!("SKIPPED: {why}");
            return;
        }
        let _one_job = ONE_JOB.lock().unwrap_or_else(|e| e.into_inner());
    };
}

/// `mpirun -np ranks` of the binary, allowed to run as root and on more ranks than
/// cores, with `mca` settings of the launcher.
fn mpirun(ranks: usize, mca: &[(&str, &str)]) -> Command {
    let mut c = Command::new("mpirun");
    c.env("OMPI_ALLOW_RUN_AS_ROOT", "1").env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
    c.args(["-np", &ranks.to_string(), "--oversubscribe"]);
    for (k, v) in mca {
        c.args(["--mca", k, v]);
    }
    c.arg(env!("CARGO_BIN_EXE_infogan"));
    c
}

/// The training flags of every run here: the tiny dataset, batches of 16, one thread
/// per rank, DiffAugment and mode seeking on (so that their per-image draws and
/// pairs are covered).
fn train_args(data: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "train",
        "--dataset",
        "mnist",
        "--batch-size",
        "16",
        "--seed",
        "5",
        "--threads",
        "1",
        "--no-score",
        "--diffaug",
        "color,translation,cutout",
        "--mode-seeking",
        "1",
        "--data-dir",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend([data.display().to_string(), "--out".into(), out.display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn run_on(ranks: Option<usize>, data: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut c = match ranks {
        Some(r) => mpirun(r, &[]),
        None => bin(),
    };
    c.args(train_args(data, out, extra)).output().expect("the run starts")
}

/// Every tensor of two checkpoints bit for bit (their metadata may differ only in the
/// shard count, when the runs' differ).
fn assert_same_tensors(a: &Path, b: &Path, what: &str) {
    let read = |p: &Path| infogan::tensorfile::TensorFile::read(&p.join("checkpoint.safetensors")).unwrap();
    let (fa, fb) = (read(a), read(b));
    assert_eq!(fa.tensors.keys().collect::<Vec<_>>(), fb.tensors.keys().collect::<Vec<_>>(), "{what}");
    for (name, ta) in &fa.tensors {
        let tb = &fb.tensors[name];
        let differ = ta.iter().zip(tb.iter()).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
        assert!(ta.shape() == tb.shape() && differ == 0, "{what}: {differ} values of {name} differ");
    }
}

/// The first seven columns of losses.csv (the eighth is the speed).
fn losses(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("losses.csv")).unwrap();
    text.lines().map(|l| l.split(',').take(7).collect::<Vec<_>>().join(",")).collect()
}

#[test]
fn ranks_sharing_the_shards_train_the_bits_of_one_process() {
    require_mpi!();
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_mnist(tmp.path(), 96);
    let dir = |name: &str| tmp.path().join(name);
    let steps = ["--max-steps", "8", "--shards", "4"];
    assert_ok(&run_on(None, &data, &dir("alone"), &steps), "one process with 4 shards");
    for ranks in [1, 2, 4] {
        let out = dir(&format!("ranks{ranks}"));
        assert_ok(&run_on(Some(ranks), &data, &out, &steps), &format!("{ranks} ranks"));
        assert_same_tensors(&dir("alone"), &out, &format!("{ranks} ranks against one process"));
        // The same rows, so also written once (by rank 0), not once per rank.
        assert_eq!(losses(&dir("alone")), losses(&out), "{ranks} ranks: losses.csv");
    }

    // Half the run on 2 ranks, the rest on 4: the bits of the uninterrupted run.
    let split = dir("split");
    assert_ok(&run_on(Some(2), &data, &split, &["--max-steps", "6", "--shards", "4"]), "first half on 2 ranks");
    assert_ok(&run_on(Some(4), &data, &split, &["--max-steps", "8", "--resume"]), "second half on 4 ranks");
    assert_same_tensors(&dir("alone"), &split, "resumed on another number of ranks");
}

#[test]
fn a_job_has_one_shard_per_rank_unless_told() {
    require_mpi!();
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_mnist(tmp.path(), 64);
    let (job, alone) = (tmp.path().join("job"), tmp.path().join("alone"));
    let job_run = run_on(Some(2), &data, &job, &["--max-steps", "4"]);
    assert_ok(&job_run, "2 ranks");
    assert!(stderr(&job_run).contains("2 ranks of 1 threads"), "{}", stderr(&job_run));
    assert_ok(&run_on(None, &data, &alone, &["--max-steps", "4", "--shards", "2"]), "one process, 2 shards");
    assert_same_tensors(&alone, &job, "2 ranks against one process with --shards 2");

    // A checkpoint of one shard continues on 2 ranks, with a word on the new order.
    let single = tmp.path().join("single");
    assert_ok(&run_on(None, &data, &single, &["--max-steps", "2"]), "one process, 1 shard");
    let resumed = run_on(Some(2), &data, &single, &["--max-steps", "4", "--resume"]);
    assert_ok(&resumed, "resumed on 2 ranks");
    assert!(stderr(&resumed).contains("cannot be shared by 2 ranks"), "{}", stderr(&resumed));

    // Shards that the ranks cannot share are refused with the way out.
    let bad = run_on(Some(3), &data, &tmp.path().join("bad"), &["--max-steps", "2", "--shards", "4"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("3 ranks cannot share --shards 4"), "{}", stderr(&bad));
}

/// A long job in the background, and its ranks' process ids once training runs. Its
/// stderr goes to `out`.log (a pipe nobody reads would fill and stall it).
fn start_job(data: &Path, out: &Path, mca: &[(&str, &str)], extra: &[&str]) -> (Child, Vec<u32>) {
    let log = std::fs::File::create(out.with_extension("log")).unwrap();
    let mut child = mpirun(2, mca)
        .args(train_args(data, out, &[&["--max-steps", "100000"], extra].concat()))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("mpirun starts");
    let started = Instant::now();
    while !out.join("losses.csv").is_file() {
        assert!(started.elapsed() < Duration::from_secs(120), "the job did not start training");
        assert!(child.try_wait().unwrap().is_none(), "the job ended before training");
        std::thread::sleep(Duration::from_millis(200));
    }
    let ranks = children(child.id());
    assert_eq!(ranks.len(), 2, "mpirun's children: {ranks:?}");
    (child, ranks)
}

/// The process ids whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        // The fields after the command name in parentheses: state, then the parent.
        let after = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
        if after.split_whitespace().nth(1).and_then(|v| v.parse().ok()) == Some(pid) {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn signal(pid: u32, sig: &str) {
    assert!(Command::new("kill").args([&format!("-{sig}"), &pid.to_string()]).status().unwrap().success());
}

/// Waits for the job writing into `out` to end, at most `limit`; its exit status and
/// stderr.
fn wait_for(mut child: Child, out: &Path, limit: Duration) -> (std::process::ExitStatus, String, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let err = std::fs::read_to_string(out.with_extension("log")).unwrap();
            return (status, err, started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("the job did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_hung_rank_stops_the_job_with_a_message() {
    require_mpi!();
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_mnist(tmp.path(), 64);
    let out = tmp.path().join("run");
    let (child, ranks) = start_job(&data, &out, &[], &["--rank-timeout", "3"]);
    signal(ranks[1], "STOP");
    let (status, err, took) = wait_for(child, &out, Duration::from_secs(90));
    let _ = Command::new("kill").args(["-KILL", &ranks[1].to_string()]).status();
    assert!(!status.success(), "the job succeeded: {err}");
    assert!(err.contains("a rank has died or hangs"), "{err}");
    eprintln!("a hung rank stopped the job after {took:?}");
}

#[test]
fn a_dead_rank_stops_the_job() {
    require_mpi!();
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_mnist(tmp.path(), 64);
    let out = tmp.path().join("run");
    let (child, ranks) = start_job(&data, &out, &[], &[]);
    signal(ranks[1], "KILL");
    let (status, err, took) = wait_for(child, &out, Duration::from_secs(60));
    assert!(!status.success(), "the job succeeded: {err}");
    eprintln!("a killed rank stopped the job after {took:?}");
}

#[test]
fn sigterm_on_the_launcher_stops_every_rank_after_a_checkpoint() {
    require_mpi!();
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_mnist(tmp.path(), 64);
    let out: PathBuf = tmp.path().join("run");
    // Open MPI's launcher (4.1) answers SIGTERM with SIGCONT to the ranks, then
    // SIGTERM after `odls_base_sigkill_timeout` seconds, then SIGKILL as long again
    // after: the default of 1 s leaves no time for a checkpoint (README, "Training on
    // several processes").
    let (child, _) = start_job(&data, &out, &[("odls_base_sigkill_timeout", "20")], &[]);
    signal(child.id(), "TERM");
    let (status, err, _) = wait_for(child, &out, Duration::from_secs(90));
    assert!(!status.success(), "a stopped job should not report success");
    assert!(err.contains("interrupted at step"), "{err}");
    assert!(out.join("checkpoint.safetensors").is_file());
    // The job goes on from there on any number of ranks.
    let step = |e: &str| -> u64 {
        let at = e.find("interrupted at step ").unwrap() + "interrupted at step ".len();
        e[at..].split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    let target = (step(&err) + 2).to_string();
    let resumed = run_on(Some(1), &data, &out, &["--resume", "--max-steps", &target]);
    assert_ok(&resumed, "resumed after SIGTERM");
}
