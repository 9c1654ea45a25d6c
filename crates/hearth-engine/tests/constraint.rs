//! Constrained decoding on the real model: sampled output always matches its JSON schema,
//! regular expression or grammar; a constrained sequence's output does not depend on its
//! batch or on speculation; bad grammars are refused with their reason.

#[path = "../../hearth-model/tests/common/mod.rs"]
mod common;

use std::sync::Arc;

use hearth_engine::{
    Engine, EngineConfig, Event, FinishReason, Grammar, Request, SamplingParams, SpecConfig,
};
use hearth_model::Model;
use serde_json::{json, Value};

fn chat(model: &Model, user: &str) -> Vec<u32> {
    let t = model
        .chat_template
        .as_ref()
        .expect("the model has a template");
    let m = [hearth_model::ChatMessage::new("user", user)];
    model
        .tokenizer
        .encode(&t.render(&m, true).unwrap(), true, true)
}

fn request(engine: &Engine, prompt: Vec<u32>, g: &Grammar, sampling: SamplingParams) -> Request {
    Request {
        prompt_ids: prompt,
        max_tokens: 200,
        sampling,
        stop: Vec::new(),
        ignore_eos: false,
        logprobs: None,
        constraint: Some(engine.compile(g).expect("the grammar compiles")),
    }
}

/// (token ids, text, finish reason) of one request.
fn run(engine: &Engine, req: Request) -> (Vec<u32>, String, FinishReason) {
    wait(engine.submit(req).unwrap())
}

fn wait(mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>) -> (Vec<u32>, String, FinishReason) {
    let (mut ids, mut text) = (Vec::new(), String::new());
    while let Some(ev) = rx.blocking_recv() {
        match ev {
            Event::Token { id, text: t, .. } => {
                ids.push(id);
                text.push_str(&t);
            }
            Event::Done { text: t, summary } => {
                text.push_str(&t);
                return (ids, text, summary.finish_reason);
            }
            Event::Error(e) => panic!("engine error: {e}"),
        }
    }
    panic!("no Done event");
}

fn sampled(seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: 0.8,
        seed: Some(seed),
        ..SamplingParams::default()
    }
}

/// The schema's shape, checked by hand: an object with a string `name`, an integer `age`
/// between 0 and 150, a `role` among three, and a list of at most 3 string `tags`.
fn person_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 40},
            "age": {"type": "integer", "minimum": 0, "maximum": 150},
            "role": {"enum": ["admin", "user", "guest"]},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 20}, "maxItems": 3}
        },
        "required": ["name", "age", "role", "tags"],
        "additionalProperties": false
    })
}

fn check_person(text: &str) {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    let o = v.as_object().expect("an object");
    assert_eq!(o.len(), 4, "{text}");
    assert!(
        o["name"].as_str().is_some_and(|s| s.chars().count() <= 40),
        "{text}"
    );
    assert!(
        o["age"].as_i64().is_some_and(|a| (0..=150).contains(&a)),
        "{text}"
    );
    assert!(
        ["admin", "user", "guest"].contains(&o["role"].as_str().unwrap()),
        "{text}"
    );
    let tags = o["tags"].as_array().expect("tags is an array");
    assert!(
        tags.len() <= 3 && tags.iter().all(|t| t.is_string()),
        "{text}"
    );
}

#[test]
fn sampled_output_matches_its_schema_regex_and_grammar() {
    let model = Arc::new(Model::load(common::model_path()).unwrap());
    let engine = Engine::start(model.clone(), EngineConfig::new(8, 512, 2)).unwrap();
    let prompt = chat(&model, "Describe a user of our system as JSON.");
    let schema = Grammar::JsonSchema(person_schema());
    // Eight requests at once, each sampled with its own seed.
    let rxs: Vec<_> = (0..8)
        .map(|seed| {
            engine
                .submit(request(&engine, prompt.clone(), &schema, sampled(seed)))
                .unwrap()
        })
        .collect();
    for rx in rxs {
        let (_, text, reason) = wait(rx);
        assert_eq!(reason, FinishReason::Stop, "{text}");
        check_person(&text);
    }

    let date = Grammar::Regex(r"[0-9]{4}-[0-9]{2}-[0-9]{2}".into());
    let (_, text, reason) = run(
        &engine,
        request(&engine, chat(&model, "When?"), &date, sampled(1)),
    );
    assert_eq!(reason, FinishReason::Stop);
    assert!(
        text.len() == 10
            && text.chars().enumerate().all(|(i, c)| if i == 4 || i == 7 {
                c == '-'
            } else {
                c.is_ascii_digit()
            }),
        "{text:?}"
    );

    let gbnf = Grammar::Gbnf(
        "root ::= answer \" because \" reason\nanswer ::= \"yes\" | \"no\"\nreason ::= [a-z ]{3,30} \".\"".into(),
    );
    for seed in 0..4 {
        let (_, text, _) = run(
            &engine,
            request(
                &engine,
                chat(&model, "Is it raining?"),
                &gbnf,
                sampled(seed),
            ),
        );
        let (answer, reason) = text.split_once(" because ").expect(&text);
        assert!(answer == "yes" || answer == "no", "{text:?}");
        assert!(
            reason.ends_with('.')
                && reason[..reason.len() - 1]
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == ' '),
            "{text:?}"
        );
    }
}

#[test]
fn constrained_greedy_output_is_the_same_alone_batched_and_speculated() {
    let model = Arc::new(Model::load(common::model_path()).unwrap());
    let schema = Grammar::JsonSchema(person_schema());
    let prompt = chat(&model, "Describe a user of our system as JSON.");
    let engine = Engine::start(model.clone(), EngineConfig::new(8, 512, 2)).unwrap();
    let alone = run(
        &engine,
        request(&engine, prompt.clone(), &schema, SamplingParams::greedy()),
    );
    check_person(&alone.1);
    // Alongside unconstrained and other constrained sequences.
    let others: Vec<_> = (0..5)
        .map(|i| {
            let mut r = request(
                &engine,
                chat(&model, &format!("Tell me about day {i}.")),
                &schema,
                sampled(i),
            );
            if i % 2 == 0 {
                r.constraint = None;
            }
            engine.submit(r).unwrap()
        })
        .collect();
    let batched = run(
        &engine,
        request(&engine, prompt.clone(), &schema, SamplingParams::greedy()),
    );
    drop(others);
    assert_eq!(batched.0, alone.0);
    // N-gram speculation drafts from the prompt and the JSON's repetitions; drafts the
    // grammar refuses are cut, the rest verified under the constraint.
    let mut cfg = EngineConfig::new(8, 512, 2);
    cfg.spec = Some(SpecConfig::ngram(4));
    let spec = Engine::start(model.clone(), cfg).unwrap();
    let speculated = run(
        &spec,
        request(&spec, prompt, &schema, SamplingParams::greedy()),
    );
    assert_eq!(speculated.0, alone.0);
}

#[test]
fn bad_grammars_are_refused_with_their_reason() {
    let model = Arc::new(Model::load(common::model_path()).unwrap());
    let engine = Engine::start(model, EngineConfig::new(1, 64, 1)).unwrap();
    for (g, needle) in [
        (
            Grammar::JsonSchema(json!({"type": "frobnicate"})),
            "frobnicate",
        ),
        (Grammar::JsonSchema(json!(3)), "must be an object"),
        (
            Grammar::JsonSchema(json!({"$ref": "#/$defs/missing"})),
            "missing",
        ),
        (Grammar::Regex("(unclosed".into()), "unclosed"),
        (Grammar::Lark("start: nothing_here".into()), "nothing_here"),
        (
            Grammar::Gbnf("root ::= undefined-rule".into()),
            "undefined-rule is used but not defined",
        ),
    ] {
        let e = engine.compile(&g).expect_err(&format!("{g:?} compiled")).0;
        assert!(e.to_lowercase().contains(needle), "{g:?}: {e}");
    }
}

#[test]
fn a_grammar_after_thinking_leaves_the_thought_free() {
    let model = Arc::new(Model::load(common::model_path()).unwrap());
    let engine = Engine::start(model.clone(), EngineConfig::new(1, 64, 1)).unwrap();
    let schema = Grammar::JsonSchema(
        json!({"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}),
    );
    // The text, then end-of-generation: accepted whole only where the grammar is complete.
    let eos = model.tokenizer.eog_ids()[0];
    let tok = |s: &str| {
        let mut ids = model.tokenizer.encode(s, false, false);
        ids.push(eos);
        ids
    };
    for (in_prompt, text, ok) in [
        (
            false,
            "<think>\nAnything {at all} here.\n</think>\n\n{\"a\": 1}",
            true,
        ),
        (false, "{\"a\": 2}", true),
        (false, "Thinking without tags {\"a\": 2}", false),
        (false, "<think>x</think>\n\n{\"b\": 1}", false),
        (true, "still thinking</think>\n{\"a\": 3}", true),
        (true, "{\"a\": 3}", false),
    ] {
        let mut c = engine
            .compile(&schema.after_thinking(in_prompt).unwrap())
            .unwrap();
        let ids = tok(text);
        let n = c.valid_prefix(&ids);
        assert_eq!(n == ids.len(), ok, "{text:?}: {n} of {}", ids.len());
    }
    for g in [
        Grammar::Regex("[0-9]+".into()),
        Grammar::Gbnf("root ::= \"yes\" | \"no\"".into()),
        Grammar::Lark("start: \"yes\" | \"no\"".into()),
    ] {
        let mut c = engine.compile(&g.after_thinking(false).unwrap()).unwrap();
        let ids = tok("<think>hmm</think>\nyes");
        let ok = matches!(g, Grammar::Regex(_)) != (c.valid_prefix(&ids) == ids.len());
        assert!(ok, "{g:?}");
    }
}
