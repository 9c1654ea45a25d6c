//! The serving engine on the real model: continuous batching, chunked prefill and
//! preemption must not change what a greedy request returns, and a dropped client frees
//! its blocks.

#[path = "../../hearth-model/tests/common/mod.rs"]
mod common;

use std::sync::Arc;

use hearth_engine::{Engine, EngineConfig, EngineError, Event, Request, SamplingParams, Session};
use hearth_model::{KvType, Model};

fn greedy(prompt: Vec<u32>, max_tokens: usize) -> Request {
    Request {
        prompt_ids: prompt,
        max_tokens,
        sampling: SamplingParams::greedy(),
        stop: Vec::new(),
        ignore_eos: true,
        logprobs: None,
        constraint: None,
    }
}

/// Every event of one request: (token ids, text, completion tokens reported).
fn collect(mut rx: tokio::sync::mpsc::UnboundedReceiver<Event>) -> (Vec<u32>, String, usize) {
    let (mut ids, mut text) = (Vec::new(), String::new());
    while let Some(ev) = rx.blocking_recv() {
        match ev {
            Event::Token { id, text: t, .. } => {
                ids.push(id);
                text.push_str(&t);
            }
            Event::Done { text: t, summary } => {
                text.push_str(&t);
                return (ids, text, summary.completion_tokens);
            }
            Event::Error(e) => panic!("engine error: {e}"),
        }
    }
    panic!("the engine closed the stream without Done");
}

/// The same request through the single-sequence path (a contiguous cache).
fn alone(model: &Model, prompt: &[u32], n: usize) -> Vec<u32> {
    alone_with(model, prompt, n, KvType::F16)
}

fn alone_with(model: &Model, prompt: &[u32], n: usize, kv_type: KvType) -> Vec<u32> {
    let mut s = Session::new(model, 512, kv_type);
    let mut logits = s.feed(model, prompt).unwrap();
    let mut out = Vec::new();
    for _ in 0..n {
        let t = hearth_engine::sampler::argmax(&logits);
        out.push(t);
        logits = s.feed(model, &[t]).unwrap();
    }
    out
}

fn prompts(model: &Model, n: usize) -> Vec<Vec<u32>> {
    (0..n)
        .map(|i| {
            let words = [
                "river", "engine", "garden", "silver", "orbit", "lantern", "maple", "harbor",
            ];
            let text = format!(
                "Story {i}: the {} and the {} met {} times near the",
                words[i % 8],
                words[(i * 3 + 1) % 8],
                i + 2
            );
            model.tokenizer.encode(&text, true, true)
        })
        .collect()
}

fn run_all(engine: &Engine, prompts: &[Vec<u32>], n: usize) -> Vec<Vec<u32>> {
    let rxs: Vec<_> = prompts
        .iter()
        .map(|p| engine.submit(greedy(p.clone(), n)).unwrap())
        .collect();
    rxs.into_iter()
        .map(|rx| {
            let (ids, _, count) = collect(rx);
            assert_eq!(ids.len(), count);
            ids
        })
        .collect()
}

#[test]
fn concurrent_greedy_requests_equal_each_alone() {
    let model = Arc::new(Model::load(common::model_path()).unwrap());
    let ps = prompts(&model, 6);
    let want: Vec<Vec<u32>> = ps.iter().map(|p| alone(&model, p, 12)).collect();
    // A small token budget forces prompts to be prefilled in chunks between decode steps.
    let mut cfg = EngineConfig::new(4, 256, 2);
    cfg.token_budget = 7;
    let engine = Engine::start(model.clone(), cfg).unwrap();
    assert_eq!(run_all(&engine, &ps, 12), want);
}

#[test]
fn quantized_kv_caches_batch_like_they_run_alone() {
    let model = Arc::new(Model::load(common::model_path()).unwrap());
    let ps = prompts(&model, 3);
    for kv_type in [KvType::Q8_0, KvType::Q4_0] {
        let want: Vec<Vec<u32>> = ps
            .iter()
            .map(|p| alone_with(&model, p, 10, kv_type))
            .collect();
        let mut cfg = EngineConfig::new(4, 256, 2);
        cfg.kv_type = kv_type;
        let engine = Engine::start(model.clone(), cfg).unwrap();
        assert_eq!(run_all(&engine, &ps, 10), want, "{kv_type}");
    }
}

#[test]
fn preemption_recomputes_without_changing_outputs() {
    let model = Arc::new(Model::load(common::model_path()).unwrap());
    let ps = prompts(&model, 5);
    let want: Vec<Vec<u32>> = ps.iter().map(|p| alone(&model, p, 20)).collect();
    // Blocks of 4 and a pool that holds about two sequences: the others get preempted.
    let mut cfg = EngineConfig::new(5, 48, 2);
    cfg.block_size = 4;
    cfg.n_blocks = 14;
    let engine = Engine::start(model.clone(), cfg).unwrap();
    assert_eq!(run_all(&engine, &ps, 20), want);
    assert!(
        engine
            .metrics
            .preemptions_total
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0,
        "the test did not preempt"
    );
}

#[test]
fn a_dropped_receiver_frees_its_blocks() {
    let model = Arc::new(Model::load(common::model_path()).unwrap());
    let engine = Engine::start(model.clone(), EngineConfig::new(2, 256, 2)).unwrap();
    let p = prompts(&model, 1).remove(0);
    let mut rx = engine.submit(greedy(p.clone(), 200)).unwrap();
    // Read two tokens, then hang up.
    for _ in 0..2 {
        assert!(matches!(rx.blocking_recv(), Some(Event::Token { .. })));
    }
    drop(rx);
    // The next request still runs to completion, and the pool ends empty.
    let (ids, _, _) = collect(engine.submit(greedy(p.clone(), 4)).unwrap());
    assert_eq!(ids, alone(&model, &p, 4));
    let m = &engine.metrics;
    for _ in 0..100 {
        if m.kv_blocks_used.load(std::sync::atomic::Ordering::Relaxed) == 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        m.kv_blocks_used.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    assert_eq!(
        m.requests_cancelled
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn stop_strings_logprobs_and_bad_requests() {
    let model = Arc::new(Model::load(common::model_path()).unwrap());
    let engine = Engine::start(model.clone(), EngineConfig::new(2, 64, 2)).unwrap();
    let p = prompts(&model, 1).remove(0);
    let (_, full, _) = collect(engine.submit(greedy(p.clone(), 16)).unwrap());
    // Stop at a piece of the greedy text from its middle: the output ends right before it.
    let cut = full.char_indices().nth(full.chars().count() / 2).unwrap().0;
    let stop: String = full[cut..].chars().take(3).collect();
    let mut req = greedy(p.clone(), 16);
    req.stop = vec![stop.clone()];
    req.logprobs = Some(3);
    let mut rx = engine.submit(req).unwrap();
    let mut text = String::new();
    let mut reason = None;
    while let Some(ev) = rx.blocking_recv() {
        match ev {
            Event::Token {
                text: t, logprob, ..
            } => {
                text.push_str(&t);
                let lp = logprob.expect("logprobs were asked for");
                assert_eq!(lp.top.len(), 3);
                // Greedy: the chosen token is the most likely one.
                assert_eq!(lp.logprob, lp.top[0].1);
                assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1) && lp.top[0].1 <= 0.0);
            }
            Event::Done { text: t, summary } => {
                text.push_str(&t);
                reason = Some(summary.finish_reason);
            }
            Event::Error(e) => panic!("{e}"),
        }
    }
    assert_eq!(reason, Some(hearth_engine::FinishReason::Stop));
    assert_eq!(text, full[..full.find(&stop).unwrap()]);

    assert_eq!(
        engine.submit(greedy(vec![], 4)).unwrap_err(),
        EngineError::EmptyPrompt
    );
    assert!(matches!(
        engine.submit(greedy(vec![1; 64], 4)).unwrap_err(),
        EngineError::PromptTooLong { .. }
    ));
    let mut bad = greedy(p.clone(), 4);
    bad.sampling.temperature = f32::NAN;
    assert!(matches!(
        engine.submit(bad).unwrap_err(),
        EngineError::BadParameter(_)
    ));
}

/// Runs one request to the end: (generated ids, summary).
fn run_one(engine: &Engine, req: Request) -> (Vec<u32>, hearth_engine::Summary) {
    let mut rx = engine.submit(req).unwrap();
    let mut ids = Vec::new();
    while let Some(ev) = rx.blocking_recv() {
        match ev {
            Event::Token { id, .. } => ids.push(id),
            Event::Done { summary, .. } => return (ids, summary),
            Event::Error(e) => panic!("{e}"),
        }
    }
    panic!("no Done");
}

#[test]
fn prefix_cache_reuses_blocks_across_requests_and_turns() {
    let model = Arc::new(Model::load(common::model_path()).unwrap());
    let engine = Engine::start(model.clone(), EngineConfig::new(4, 512, 2)).unwrap();
    let system = model.tokenizer.encode(
        &"You are a helpful assistant who answers briefly. ".repeat(6),
        true,
        true,
    );
    let with = |tail: &str| [system.clone(), model.tokenizer.encode(tail, false, true)].concat();

    // Two users share a system prompt: the second reuses every full block of it.
    let (a, sa) = run_one(&engine, greedy(with("First question?"), 8));
    assert_eq!(sa.cached_tokens, 0);
    let p2 = with("Second question?");
    let (b, sb) = run_one(&engine, greedy(p2.clone(), 8));
    assert_eq!(
        sb.cached_tokens,
        system.len() / 16 * 16,
        "system prompt of {} tokens",
        system.len()
    );
    assert_eq!(
        b,
        alone(&model, &p2, 8),
        "a cached prefix changed the output"
    );
    assert_eq!(a, alone(&model, &with("First question?"), 8));

    // The next turn of a conversation reuses the earlier prompt and answer.
    let turn2 = [
        p2.clone(),
        b.clone(),
        model.tokenizer.encode(" And then?", false, true),
    ]
    .concat();
    let (c, sc) = run_one(&engine, greedy(turn2.clone(), 8));
    assert!(
        sc.cached_tokens >= (p2.len() + b.len() - 1) / 16 * 16,
        "cached {} of {}",
        sc.cached_tokens,
        turn2.len()
    );
    assert_eq!(sc.timings.prompt_eval_count, turn2.len() - sc.cached_tokens);
    assert_eq!(c, alone(&model, &turn2, 8));

    let m = &engine.metrics;
    assert!(
        m.prefix_cache_hits_total
            .load(std::sync::atomic::Ordering::Relaxed) as usize
            >= sb.cached_tokens + sc.cached_tokens
    );

    // Turned off, nothing is reused.
    let mut cfg = EngineConfig::new(4, 512, 2);
    cfg.prefix_caching = false;
    let engine = Engine::start(model.clone(), cfg).unwrap();
    run_one(&engine, greedy(p2.clone(), 2));
    assert_eq!(run_one(&engine, greedy(p2, 2)).1.cached_tokens, 0);
}

#[test]
fn ngram_speculation_keeps_greedy_output_alone_and_batched() {
    let model = Arc::new(Model::load(common::model_path()).unwrap());
    // Text that repeats, so lookups find drafts (and some of them are right).
    let passage = "Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday, Monday, Tuesday, Wednesday,";
    let mut ps = vec![model.tokenizer.encode(passage, true, true)];
    ps.extend(prompts(&model, 3));
    let want: Vec<Vec<u32>> = ps.iter().map(|p| alone(&model, p, 24)).collect();
    let mut cfg = EngineConfig::new(4, 256, 2);
    cfg.spec = Some(hearth_engine::SpecConfig::ngram(5));
    let engine = Engine::start(model.clone(), cfg).unwrap();
    // Alone, then all together.
    let (first, summary) = run_one(&engine, greedy(ps[0].clone(), 24));
    assert_eq!(first, want[0]);
    assert!(
        summary.drafted_tokens > 0 && summary.accepted_tokens > 0,
        "{summary:?}"
    );
    assert_eq!(summary.completion_tokens, 24);
    assert_eq!(run_all(&engine, &ps, 24), want);
    let m = &engine.metrics;
    assert!(
        m.spec_accepted_total
            .load(std::sync::atomic::Ordering::Relaxed)
            <= m.spec_drafted_total
                .load(std::sync::atomic::Ordering::Relaxed)
    );
}

#[test]
fn draft_model_speculation_keeps_greedy_output() {
    let model = Arc::new(Model::load(common::model_path()).unwrap());
    let ps = prompts(&model, 3);
    let want: Vec<Vec<u32>> = ps.iter().map(|p| alone(&model, p, 16)).collect();
    // The model drafting for itself: every greedy draft must be confirmed.
    let mut cfg = EngineConfig::new(4, 256, 2);
    cfg.spec = Some(hearth_engine::SpecConfig::draft(4));
    cfg.draft_model = Some(hearth_engine::DraftModel(model.clone()));
    let engine = Engine::start(model.clone(), cfg).unwrap();
    let (first, summary) = run_one(&engine, greedy(ps[0].clone(), 16));
    assert_eq!(first, want[0]);
    assert!(summary.drafted_tokens > 0, "{summary:?}");
    assert_eq!(
        summary.accepted_tokens, summary.drafted_tokens,
        "{summary:?}"
    );
    assert_eq!(run_all(&engine, &ps, 16), want);
    // A request with sampling still runs (the acceptance rule is exact for any sampler).
    let mut sampled = greedy(ps[1].clone(), 8);
    sampled.sampling = hearth_engine::SamplingParams {
        seed: Some(3),
        ..Default::default()
    };
    assert_eq!(run_one(&engine, sampled).0.len(), 8);
}

#[test]
fn a_ten_turn_chat_runs_only_each_turns_new_tokens() {
    let model = Arc::new(Model::load(common::model_path()).unwrap());
    let engine = Engine::start(model.clone(), EngineConfig::new(2, 2048, 2)).unwrap();
    let mut conversation = model
        .tokenizer
        .encode("A conversation about rivers.", true, true);
    for turn in 0..10 {
        let user = model
            .tokenizer
            .encode(&format!(" Question {turn}: tell me more."), false, true);
        let before = conversation.len();
        conversation.extend(&user);
        let (answer, s) = run_one(&engine, greedy(conversation.clone(), 6));
        // Everything before this turn was cached, except the partly filled last block.
        let new = conversation.len() - before;
        assert!(
            s.timings.prompt_eval_count <= new + 16,
            "turn {turn}: ran {} of {} prompt tokens ({new} new)",
            s.timings.prompt_eval_count,
            conversation.len()
        );
        if turn > 0 {
            assert!(
                s.cached_tokens >= before / 16 * 16 - 16,
                "turn {turn}: cached {}",
                s.cached_tokens
            );
        }
        conversation.extend(&answer);
    }
}

/// A mixture-of-experts model (generated: the `qwen3moe` and `qwen2moe` presets of
/// `hearth-synth`, the latter with a shared expert) decodes 16 sequences at once exactly
/// as each alone: a token's experts see other tokens in the same expert product, and
/// that must not change its output.
#[test]
fn moe_models_batch_sixteen_like_they_run_alone() {
    for arch in ["qwen3moe", "qwen2moe"] {
        let bytes = hearth_synth::generate(&hearth_synth::preset(arch).unwrap()).unwrap();
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), bytes).unwrap();
        let model = Arc::new(Model::load(file.path()).unwrap());
        let ps = prompts(&model, 16);
        let want: Vec<Vec<u32>> = ps.iter().map(|p| alone(&model, p, 16)).collect();
        let engine = Engine::start(model.clone(), EngineConfig::new(16, 128, 2)).unwrap();
        assert_eq!(run_all(&engine, &ps, 16), want, "{arch}");
        eprintln!("ran: {arch}: 16 sequences batched equal each alone");
    }
}

/// Embedding requests queued together run on the engine thread, batched as they meet,
/// and each vector is the one its input gets alone; an encoder refuses to generate, and
/// inputs it cannot take are refused at once.
#[test]
fn embeddings_batch_on_the_engine_and_match_one_by_one() {
    use hearth_engine::EmbedRequest;
    use hearth_model::Pooling;
    let model = Arc::new(Model::load(common::minilm_path()).unwrap());
    let engine = Engine::start(model.clone(), EngineConfig::new(4, 512, 2)).unwrap();
    let ids: Vec<Vec<u32>> = ["a", "Hello world!", "The quick brown fox jumps."]
        .iter()
        .map(|t| model.tokenizer.encode(t, true, false))
        .collect();
    let rxs: Vec<_> = ids
        .iter()
        .map(|i| {
            engine
                .embed(EmbedRequest {
                    inputs: vec![i.clone(), i[..2].to_vec()],
                    pooling: Pooling::Mean,
                    n_first: Vec::new(),
                })
                .unwrap()
        })
        .collect();
    for (rx, i) in rxs.into_iter().zip(&ids) {
        let got = rx.blocking_recv().unwrap().unwrap();
        let alone = model.embed(&[i, &i[..2]], Pooling::Mean).unwrap();
        assert_eq!(got, alone);
    }
    assert!(matches!(
        engine.submit(greedy(ids[0].clone(), 4)),
        Err(EngineError::BadParameter(_))
    ));
    for bad in [
        vec![],
        vec![vec![]],
        vec![vec![u32::MAX]],
        vec![vec![101; 513]],
    ] {
        assert!(engine
            .embed(EmbedRequest {
                inputs: bad,
                pooling: Pooling::Mean,
                n_first: Vec::new(),
            })
            .is_err());
    }
}

/// Reranking requests (a cross-encoder's query-document pairs, pooling `rank`) batch on
/// the engine thread like embeddings, and each score is the one its pair gets alone; the
/// engine refuses a pair without its segment length, and an embedding model refuses to
/// rerank.
#[test]
fn rerank_pairs_batch_on_the_engine_and_match_one_by_one() {
    use hearth_engine::EmbedRequest;
    use hearth_model::encoder::EncoderInput;
    use hearth_model::Pooling;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny-cross-encoder.gguf");
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/data/rerank/tiny-cross-encoder");
    hearth_convert::convert_file(&folder, &path, hearth_convert::OutType::F32).unwrap();
    let model = Arc::new(Model::load(&path).unwrap());
    let engine = Engine::start(model.clone(), EngineConfig::new(4, 512, 2)).unwrap();
    let tok = |t: &str| model.tokenizer.encode(t, false, false);
    let query = tok("what is a panda?");
    let pairs: Vec<(Vec<u32>, usize)> = ["a bear in China", "hi", "music and the war"]
        .iter()
        .map(|d| model.rerank_input(&query, &tok(d), 128, false).unwrap())
        .collect();
    let rxs: Vec<_> = (0..3)
        .map(|k| {
            let mine: Vec<_> = pairs.iter().skip(k).cloned().collect();
            engine
                .embed(EmbedRequest {
                    inputs: mine.iter().map(|p| p.0.clone()).collect(),
                    pooling: Pooling::Rank,
                    n_first: mine.iter().map(|p| p.1).collect(),
                })
                .unwrap()
        })
        .collect();
    for (k, rx) in rxs.into_iter().enumerate() {
        let got = rx.blocking_recv().unwrap().unwrap();
        assert_eq!(got.len(), 3 - k);
        for (g, (t, n)) in got.iter().zip(pairs.iter().skip(k)) {
            let alone = model
                .rerank(&[EncoderInput {
                    tokens: t,
                    n_first: *n,
                }])
                .unwrap();
            assert_eq!(g, &alone, "request {k}");
        }
    }
    let (t, n) = pairs[0].clone();
    for n_first in [Vec::new(), vec![t.len() + 1], vec![n, n]] {
        let bad = EmbedRequest {
            inputs: vec![t.clone()],
            pooling: Pooling::Rank,
            n_first,
        };
        assert!(engine.embed(bad.clone()).is_err(), "{bad:?}");
    }
    let minilm = common::models_dir().join("all-minilm-l6-v2-f32.gguf");
    if minilm.is_file() {
        let m = Arc::new(Model::load(&minilm).unwrap());
        let e = Engine::start(m, EngineConfig::new(4, 512, 2)).unwrap();
        assert!(e
            .embed(EmbedRequest {
                inputs: vec![t],
                pooling: Pooling::Rank,
                n_first: vec![n],
            })
            .is_err());
    }
}
