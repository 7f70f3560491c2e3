//! `infogan serve`: the explorer's HTTP routes refuse bad requests with a 4xx and
//! keep serving, render what `infogan sample` writes, and the page works in a real
//! browser (headless Chromium, driven over the DevTools protocol): a slider and a
//! categorical button change the picture, which equals `infogan sample`'s for the
//! same latent, pixel for pixel.

mod binary;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use binary::{add_test_split, assert_ok, bin, run, tiny_mnist, train};
use infogan::output::png::Image;

/// A checkpoint of a short run on the tiny dataset, with a test split so that it
/// holds a code-to-label map.
fn small_checkpoint(dir: &Path) -> PathBuf {
    let data = tiny_mnist(dir, 32);
    add_test_split(&data);
    let run_dir = dir.join("run");
    assert_ok(&train(&data, &run_dir, &["--max-steps", "2"]), "training");
    run_dir.join("checkpoint.safetensors")
}

/// A running `infogan serve`, stopped when dropped.
struct Served {
    child: Child,
    address: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the explorer on a free port and waits for the address it prints.
fn serve(checkpoint: &Path) -> Served {
    let mut child = bin()
        .args(["serve", "--checkpoint", checkpoint.to_str().unwrap(), "--port", "0", "--threads", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary runs");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let first = lines.next().expect("serve prints its address").unwrap();
    let address = first
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_string();
    // Keep reading its log, so that the pipe never fills.
    std::thread::spawn(move || for _ in lines {});
    Served { child, address }
}

/// An HTTP status and body.
type Answer = (u16, Vec<u8>);

/// One HTTP/1.1 request; returns the status and the body.
fn http(address: &str, method: &str, path: &str, body: &[u8]) -> Answer {
    let mut stream = TcpStream::connect(address).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    // A body the server refuses unread may close the connection under our feet.
    let _ = stream.write_all(body);
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let text = String::from_utf8_lossy(&reply);
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status: {text}"));
    let split = reply.windows(4).position(|w| w == b"\r\n\r\n").expect("a header") + 4;
    (status, reply[split..].to_vec())
}

/// What `infogan sample` writes for one image.
fn sampled(checkpoint: &Path, dir: &Path, cat: usize, cont: &str, seed: u64, scale: usize) -> Image {
    let out = dir.join(format!("sample_{cat}_{seed}_{scale}.png"));
    let (seed, scale) = (seed.to_string(), scale.to_string());
    let args = ["sample", "--checkpoint", checkpoint.to_str().unwrap(), "--cat", &cat.to_string(), "--cont", cont];
    let rest = ["--n", "1", "--seed", &seed, "--scale", &scale, "--out", out.to_str().unwrap()];
    assert_ok(&run(&[&args[..], &rest[..]].concat()), "sample");
    Image::load(&out).unwrap()
}

fn decode(png: &[u8], dir: &Path, name: &str) -> Image {
    let path = dir.join(name);
    std::fs::write(&path, png).unwrap();
    Image::load(&path).unwrap()
}

#[test]
fn bad_requests_get_a_4xx_and_the_server_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let checkpoint = small_checkpoint(tmp.path());
    let served = serve(&checkpoint);
    let a = served.address.as_str();
    let render = |body: &str| http(a, "POST", "/api/render", body.as_bytes());
    let cases: Vec<(&str, Answer, &str)> = vec![
        ("unknown route", http(a, "GET", "/etc/passwd", b""), "no such page"),
        ("path outside the routes", http(a, "GET", "/../../etc/passwd", b""), "no such page"),
        ("wrong method", http(a, "DELETE", "/api/render", b""), "not allowed"),
        ("malformed JSON", render("{\"view\": \"sing"), "not a valid render request"),
        ("unknown field", render(r#"{"view":"single","cont":[0,0],"seed":1,"size":9}"#), "unknown field"),
        ("unknown view", render(r#"{"view":"movie","cont":[0,0],"seed":1}"#), "unknown variant"),
        ("categorical value", render(r#"{"view":"single","cat":10,"cont":[0,0],"seed":1}"#), "cat 10"),
        ("continuous value", render(r#"{"view":"single","cont":[0,2.5],"seed":1}"#), "out of range"),
        ("code count", render(r#"{"view":"single","cont":[0],"seed":1}"#), "2 continuous codes"),
        ("huge picture", render(r#"{"view":"grid","cont":[0,0],"seed":1,"scale":1000}"#), "scale 1000"),
        ("many columns", render(r#"{"view":"grid","cont":[0,0],"seed":1,"steps":100000}"#), "steps 100000"),
        ("swept code", render(r#"{"view":"grid","cont":[0,0],"seed":1,"code":2}"#), "code 2"),
        ("negative seed", render(r#"{"view":"single","cont":[0,0],"seed":-1}"#), "not a valid"),
        ("huge body", http(a, "POST", "/api/render", &vec![b' '; 1 << 20]), "larger than"),
    ];
    for (what, (status, body), expected) in cases {
        let message = String::from_utf8_lossy(&body);
        assert!((400..500).contains(&status), "{what}: status {status}, {message}");
        assert!(message.contains(expected), "{what}: {message}");
    }

    let (status, body) = http(a, "GET", "/api/model", b"");
    assert_eq!(status, 200, "the server still answers");
    let model: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!((model["categorical"].as_u64(), model["continuous"].as_u64()), (Some(10), Some(2)), "{model}");
    assert_eq!(model["labels"].as_array().map(Vec::len), Some(10), "the checkpoint's map: {model}");
    let (status, page) = http(a, "GET", "/", b"");
    assert!(status == 200 && String::from_utf8_lossy(&page).contains("infogan explorer"));

    // The single view is `infogan sample --n 1` for the same latent; the grid view
    // has a row per categorical value.
    let (status, png) = render(r#"{"view":"single","cat":6,"cont":[0.25,-1.5],"seed":42,"scale":3}"#);
    assert_eq!(status, 200);
    assert_eq!(decode(&png, tmp.path(), "single.png"), sampled(&checkpoint, tmp.path(), 6, "0.25,-1.5", 42, 3));
    let (status, png) = render(r#"{"view":"grid","cont":[0.5,0],"seed":42,"code":1,"steps":4,"scale":1}"#);
    assert_eq!(status, 200);
    let grid = decode(&png, tmp.path(), "grid.png");
    assert!(grid.height == 10 * 30 + 2 && grid.width > 4 * 30 + 2, "{}x{}", grid.width, grid.height);
}

/// Runs `expression` in the page and returns its value (a string, number or bool).
fn js(tab: &headless_chrome::Tab, expression: &str) -> serde_json::Value {
    let result = tab.evaluate(expression, true).unwrap_or_else(|e| panic!("{expression}: {e}"));
    result.value.unwrap_or(serde_json::Value::Null)
}

/// Waits until the page has rendered more than `renders` pictures and has nothing
/// left to render; returns the new count.
fn wait_for_render(tab: &headless_chrome::Tab, renders: u64) -> u64 {
    let started = Instant::now();
    loop {
        let state = js(tab, "JSON.stringify(window.explorer)");
        let state: serde_json::Value = serde_json::from_str(state.as_str().unwrap_or("{}")).unwrap();
        assert_eq!(state["errors"], 0, "the page failed to render: {state}");
        let done = state["renders"].as_u64().unwrap_or(0);
        if done > renders && state["busy"] == false && state["dirty"] == false {
            return done;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no new picture within a minute: {state}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The PNG the page shows, read back from its blob URL.
fn shown(tab: &headless_chrome::Tab) -> Vec<u8> {
    let bytes = js(
        tab,
        "(async () => JSON.stringify(Array.from(new Uint8Array(await (await \
         fetch(document.getElementById('picture').src)).arrayBuffer()))))()",
    );
    serde_json::from_str(bytes.as_str().expect("the picture's bytes")).unwrap()
}

#[test]
fn the_page_in_a_browser_follows_its_controls() {
    let Ok(chromium) = headless_chrome::browser::default_executable() else {
        eprintln!(
            "SKIPPED the_page_in_a_browser_follows_its_controls: no Chromium or Chrome found (install Debian's \
             `chromium`, or set CHROME to the browser's path)"
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let checkpoint = small_checkpoint(tmp.path());
    let served = serve(&checkpoint);
    let options = headless_chrome::LaunchOptions::default_builder()
        .path(Some(chromium))
        // As root (CI), Chromium runs only without its sandbox.
        .sandbox(false)
        .window_size(Some((1200, 900)))
        .idle_browser_timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let browser = headless_chrome::Browser::new(options).expect("Chromium starts");
    let tab = browser.new_tab().unwrap();
    tab.set_default_timeout(Duration::from_secs(60));
    tab.navigate_to(&format!("http://{}/", served.address)).unwrap().wait_until_navigated().unwrap();
    let mut renders = wait_for_render(&tab, 0);
    let first = shown(&tab);

    // Move the first slider with the keyboard, as a user would, then pick value 3.
    tab.find_element("#cont-0").unwrap().focus().unwrap();
    for _ in 0..30 {
        tab.press_key("ArrowRight").unwrap();
    }
    tab.find_element("#cat-3").unwrap().click().unwrap();
    renders = wait_for_render(&tab, renders);
    let last: serde_json::Value =
        serde_json::from_str(js(&tab, "JSON.stringify(window.explorer.last)").as_str().unwrap()).unwrap();
    assert_eq!(last["cat"], 3, "{last}");
    let cont: Vec<f64> = serde_json::from_value(last["cont"].clone()).unwrap();
    assert!((cont[0] - 0.3).abs() < 1e-9 && cont[1] == 0.0, "the slider is at {cont:?}");
    let moved = shown(&tab);
    assert!(moved != first, "the picture did not change");
    let (seed, scale) = (last["seed"].as_u64().unwrap(), last["scale"].as_u64().unwrap() as usize);
    let cont_flag = format!("{},{}", last["cont"][0], last["cont"][1]);
    assert_eq!(
        decode(&moved, tmp.path(), "shown.png"),
        sampled(&checkpoint, tmp.path(), 3, &cont_flag, seed, scale),
        "the page's picture is not `infogan sample --cat 3 --cont {cont_flag} --seed {seed} --scale {scale}`"
    );

    // The grid view: every categorical value against the first code.
    tab.find_element("#view-grid").unwrap().click().unwrap();
    wait_for_render(&tab, renders);
    let grid = decode(&shown(&tab), tmp.path(), "shown_grid.png");
    assert!(grid.height > 10 * 28, "the grid view is {}x{}", grid.width, grid.height);
    if let Some(path) = std::env::var_os("INFOGAN_SCREENSHOT") {
        let png = tab
            .capture_screenshot(
                headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption::Png,
                None,
                None,
                true,
            )
            .unwrap();
        std::fs::write(path, png).unwrap();
    }
}
