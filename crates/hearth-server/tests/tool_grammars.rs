//! Tool-call grammars compiled on the real vocabulary.

#[path = "../../hearth-model/tests/common/mod.rs"]
mod common;

use std::sync::Arc;

use hearth_engine::{Engine, EngineConfig};
use hearth_model::Model;
use hearth_server::tools::{parse_specs, Syntax, ToolChoice, Tools};
use serde_json::json;

fn tools(syntax: Syntax, choice: ToolChoice) -> Tools {
    let specs = parse_specs(&json!([
        {"type": "function", "function": {"name": "get_weather",
         "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
        {"type": "function", "function": {"name": "add", "parameters": {"type": "object",
         "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}}}}
    ]))
    .unwrap();
    Tools::new(specs, choice, true, syntax).unwrap()
}

/// Each syntax's required-call grammar takes a well-formed call to end of generation and
/// refuses a call to a tool not offered, or with arguments the function does not take;
/// what it takes parses back.
#[test]
fn required_call_grammars_accept_well_formed_calls_only() {
    let model = Arc::new(Model::load(common::model_path()).unwrap());
    let engine = Engine::start(model.clone(), EngineConfig::new(1, 64, 1)).unwrap();
    let eos = model.tokenizer.eog_ids()[0];
    // A control token stands in for Mistral's [TOOL_CALLS].
    let marker = model.tokenizer.special_token("<|im_start|>").unwrap();
    let ids = |prefix: Option<u32>, text: &str| {
        let mut v: Vec<u32> = prefix.into_iter().collect();
        v.extend(model.tokenizer.encode(text, false, false));
        v.push(eos);
        v
    };
    let call = r#"{"name": "get_weather", "arguments": {"city": "Paris"}}"#;
    let two = format!("<tool_call>\n{call}\n</tool_call>\n<tool_call>\n{call}\n</tool_call>");
    let cases = [
        (
            Syntax::Hermes,
            None,
            format!("<tool_call>\n{call}\n</tool_call>"),
        ),
        (Syntax::Generic, None, two),
        (
            Syntax::Llama3,
            None,
            call.replace("arguments", "parameters"),
        ),
        (Syntax::Mistral, Some(marker), format!("[{call}]")),
    ];
    for (syntax, prefix, text) in cases {
        let t = tools(syntax, ToolChoice::Required);
        let g = t.grammar(Some(marker)).expect("a call is required");
        let accepts = |text: &str| {
            let mut c = engine.compile(&g).unwrap();
            let v = ids(prefix, text);
            c.valid_prefix(&v) == v.len()
        };
        assert!(accepts(&text), "{syntax:?}: {text}");
        assert!(
            !accepts(&text.replace("get_weather", "get_time")),
            "{syntax:?}"
        );
        assert!(
            !accepts(&text.replace("\"city\"", "\"town\"")),
            "{syntax:?}"
        );
        let calls = t.parse(&text).1;
        assert_eq!(
            calls.len(),
            text.matches("get_weather").count(),
            "{syntax:?}"
        );
        assert_eq!(calls[0].arguments, r#"{"city":"Paris"}"#);
    }
    // A named choice allows that function only.
    let t = tools(Syntax::Hermes, ToolChoice::Named("add".into()));
    let mut c = engine.compile(&t.grammar(None).unwrap()).unwrap();
    let v = ids(None, &format!("<tool_call>\n{call}\n</tool_call>"));
    assert!(c.valid_prefix(&v) < v.len());
}
