//! `hearth create NAME -f Modelfile` and the created model through `list`, `show`, `cp`
//! and `rm`: a manifest beside the models, never a copy of the weights, and clear errors
//! for what a Modelfile may not say.

mod common;

use std::path::Path;

use serde_json::Value;

use common::{assert_clean_error, hearth, model_path, stdout};

const MODELFILE: &str = r#"# a pirate
FROM smollm2
PARAMETER temperature 0.3
PARAMETER stop "<|im_end|>"
PARAMETER stop "Captain:"
SYSTEM """You are a pirate.
Answer in one line."""
"#;

/// A models directory holding the default model (a link, not a copy), and a Modelfile.
fn setup() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let models = tmp.path().join("models");
    std::fs::create_dir(&models).unwrap();
    std::os::unix::fs::symlink(model_path(), models.join("SmolLM2-135M-Instruct.Q4_1.gguf"))
        .unwrap();
    std::fs::write(tmp.path().join("Modelfile"), MODELFILE).unwrap();
    tmp
}

fn run(dir: &Path, args: &[&str]) -> std::process::Output {
    let models = dir.join("models");
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--models-dir", models.to_str().unwrap()]);
    hearth(&all)
}

fn manifest(dir: &Path, name: &str) -> Value {
    let p = dir.join("models").join(format!("{name}.hearth.json"));
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn create_list_show_cp_rm() {
    let tmp = setup();
    let d = tmp.path();
    let mf = d.join("Modelfile");
    let out = stdout(&run(d, &["create", "pirate", "-f", mf.to_str().unwrap()]));
    assert!(out.contains("created 'pirate'"), "{out}");
    // A small manifest naming the base inside the models directory by its file name.
    let m = manifest(d, "pirate");
    assert_eq!(m["model"], "SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(m["parameters"]["temperature"], 0.3);
    assert_eq!(
        m["parameters"]["stop"],
        serde_json::json!(["<|im_end|>", "Captain:"])
    );
    assert_eq!(m["system"], "You are a pirate.\nAnswer in one line.");
    let files: Vec<String> = std::fs::read_dir(d.join("models"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 2, "no weights were copied: {files:?}");

    let listed = stdout(&run(d, &["list"]));
    let line = listed
        .lines()
        .find(|l| l.starts_with("pirate "))
        .expect(&listed);
    assert!(
        line.contains("98.4 MB") && line.contains("created from"),
        "{line}"
    );

    let shown = stdout(&run(d, &["show", "pirate"]));
    for want in [
        "architecture        llama",
        "capabilities        completion",
        "Parameters",
        "temperature     0.3",
        "stop            \"Captain:\"",
        "System",
        "    You are a pirate.",
        "PARAMETER stop \"<|im_end|>\"",
        "SYSTEM \"\"\"You are a pirate.",
        "KV cache",
    ] {
        assert!(shown.contains(want), "{want:?} not in:\n{shown}");
    }

    // A created model builds on another: settings inherited, then overridden.
    let child = d.join("Child");
    std::fs::write(
        &child,
        "FROM pirate\nPARAMETER temperature 0.9\nPARAMETER top_k 5\n\
         TEMPLATE \"\"\"{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}<assistant>\"\"\"\n",
    )
    .unwrap();
    stdout(&run(d, &["create", "child", "-f", child.to_str().unwrap()]));
    let m = manifest(d, "child");
    assert_eq!(m["model"], "SmolLM2-135M-Instruct.Q4_1.gguf");
    assert_eq!(m["parameters"]["temperature"], 0.9);
    assert_eq!(m["parameters"]["top_k"], 5);
    assert_eq!(m["parameters"]["stop"][1], "Captain:");
    assert_eq!(m["system"], "You are a pirate.\nAnswer in one line.");
    assert!(m["template"]
        .as_str()
        .unwrap()
        .starts_with("{% for m in messages %}"));
    let shown = stdout(&run(d, &["show", "child"]));
    assert!(
        shown.contains("Template") && shown.contains("<assistant>"),
        "{shown}"
    );

    // cp copies the manifest; rm removes only a manifest, never the base.
    stdout(&run(d, &["cp", "pirate", "parrot"]));
    assert_eq!(manifest(d, "parrot"), manifest(d, "pirate"));
    assert!(!d.join("models/parrot.gguf").exists());
    assert_clean_error(&run(d, &["cp", "pirate", "parrot"]), "already exists");
    stdout(&run(d, &["rm", "parrot"]));
    stdout(&run(d, &["rm", "pirate"]));
    assert!(!d.join("models/pirate.hearth.json").exists());
    assert!(d.join("models/SmolLM2-135M-Instruct.Q4_1.gguf").exists());
    let listed = stdout(&run(d, &["list"]));
    assert!(!listed.contains("pirate"), "{listed}");
    assert_clean_error(&run(d, &["show", "pirate"]), "unknown model 'pirate'");
}

#[test]
fn what_a_modelfile_may_not_say_is_a_clear_error() {
    let tmp = setup();
    let d = tmp.path();
    let cases = [
        (
            "FROM smollm2\nPARAMETER mirostat 2\n",
            "line 2: PARAMETER: unknown parameter 'mirostat'",
        ),
        (
            "FROM smollm2\n\nADAPTER ./lora.gguf\n",
            "line 3: ADAPTER is not supported",
        ),
        (
            "FROM smollm2\nLICENSE MIT\n",
            "line 2: LICENSE is not supported",
        ),
        (
            "FROM smollm2\nMESSAGE user hi\n",
            "line 2: MESSAGE is not supported",
        ),
        (
            "FROM smollm2\nPARAMETER top_k many\n",
            "line 2: PARAMETER: parameter top_k takes a whole number",
        ),
        (
            "FROM smollm2\nTEMPLATE \"\"\"{{ .System }} {{ .Prompt }}\"\"\"\n",
            "TEMPLATE is an Ollama Go template",
        ),
        (
            "FROM smollm2\nTEMPLATE \"{% for m in messages %}\"\n",
            "TEMPLATE is not a Jinja template Hearth can compile",
        ),
        ("PARAMETER top_k 3\n", "no FROM line"),
        ("FROM no-such-model\n", "FROM no-such-model"),
    ];
    for (text, needle) in cases {
        let mf = d.join("Bad");
        std::fs::write(&mf, text).unwrap();
        let o = run(d, &["create", "bad", "-f", mf.to_str().unwrap()]);
        assert_clean_error(&o, needle);
        assert!(!d.join("models/bad.hearth.json").exists(), "{text}");
    }
    let mf = d.join("Modelfile");
    let mf = mf.to_str().unwrap();
    assert_clean_error(
        &run(d, &["create", "../x", "-f", mf]),
        "is not a model name",
    );
    assert_clean_error(
        &run(d, &["create", "SmolLM2-135M-Instruct.Q4_1", "-f", mf]),
        "is the name of a known model",
    );
    std::os::unix::fs::symlink(model_path(), d.join("models/other.gguf")).unwrap();
    assert_clean_error(
        &run(d, &["create", "other", "-f", mf]),
        "already exists as a GGUF file",
    );
    // Commands that take a GGUF file name a created model as what it is.
    stdout(&run(d, &["create", "pirate", "-f", mf]));
    let o = run(d, &["tokenize", "-m", "pirate", "hi"]);
    assert_clean_error(&o, "made by `hearth create`");
}

/// `hearth run` on a created model is its base run with the Modelfile's SYSTEM and
/// PARAMETERs, each given option winning over its PARAMETER.
#[test]
fn run_applies_the_modelfile() {
    let tmp = setup();
    let d = tmp.path();
    let mf = d.join("Greedy");
    std::fs::write(
        &mf,
        "FROM smollm2\nPARAMETER temperature 0\nPARAMETER num_predict 6\nSYSTEM Be brief.\n",
    )
    .unwrap();
    stdout(&run(d, &["create", "greedy", "-f", mf.to_str().unwrap()]));
    let json = |args: &[&str]| -> Value {
        let mut all = vec!["run", "--json", "-t", "1"];
        all.extend(args);
        serde_json::from_str(&stdout(&run(d, &all))).unwrap()
    };
    let created = json(&["-m", "greedy", "Name a colour."]);
    let base = json(&[
        "-m",
        "SmolLM2-135M-Instruct.Q4_1",
        "--system",
        "Be brief.",
        "--temp",
        "0",
        "-n",
        "6",
        "Name a colour.",
    ]);
    assert_eq!(created["prompt_ids"], base["prompt_ids"], "SYSTEM applied");
    assert_eq!(created["generated_ids"], base["generated_ids"]);
    assert_eq!(created["generated_ids"].as_array().unwrap().len(), 6);
    // A given option wins over the PARAMETER.
    let three = json(&["-m", "greedy", "-n", "3", "Name a colour."]);
    assert_eq!(three["generated_ids"].as_array().unwrap().len(), 3);
    assert_eq!(
        three["generated_ids"].as_array().unwrap()[..],
        base["generated_ids"].as_array().unwrap()[..3]
    );
}
