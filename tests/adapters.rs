//! The method's formulas on libtorch against hand-computed cases (spec sections 3-5).

use cuma::tch_ops::TchOps;
use cuma::trainables::TchTrainables;
use cuma_model::adapters::{balance_loss, route, ExpertBank};
use cuma_model::config::{ExpertLayout, GateMode, MethodConfig};
use cuma_model::Trainables;
use tch::{Device, Kind, Tensor};

fn ops() -> TchOps {
    TchOps::new(Device::Cpu)
}

fn vec(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(&t.flatten(0, -1).to_kind(Kind::Float)).expect("floats")
}

fn ids(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(&t.flatten(0, -1)).expect("ints")
}

fn logits(v: &[f32]) -> Tensor {
    Tensor::from_slice(v).view([1, 1, -1])
}

fn close(a: &[f32], b: &[f32], tol: f32) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tol)
}

#[test]
fn topk_softmax_keeps_the_k_largest_and_zeroes_the_rest() {
    let r = route(
        &mut ops(),
        &logits(&[1.0, 3.0, 2.0, 0.5]),
        GateMode::TopkSoftmax,
        2,
        4,
        None,
    )
    .expect("routes");
    let (a, b) = (1.0 / (1.0 + (-1.0f32).exp()), 1.0 - 1.0 / (1.0 + (-1.0f32).exp()));
    assert_eq!(ids(&r.experts), vec![1, 2]);
    assert!(close(&vec(&r.gates), &[0.0, a, b, 0.0], 1e-6), "{:?}", vec(&r.gates));
    assert_eq!(vec(&r.gates)[0], 0.0);
    assert_eq!(vec(&r.gates)[3], 0.0);
    assert_eq!(vec(&r.selected), vec![0.0, 1.0, 1.0, 0.0]);
}

#[test]
fn double_softmax_matches_the_spec_example() {
    // softmax(l) = (0.6, 0.3, 0.1) -> keep (0.6, 0.3) -> softmax -> (0.574, 0.426)
    let l: Vec<f32> = [0.6f32, 0.3, 0.1].iter().map(|p| p.ln()).collect();
    let r = route(&mut ops(), &logits(&l), GateMode::DoubleSoftmax, 2, 3, None).expect("routes");
    let g = vec(&r.gates);
    assert!(close(&g, &[0.574_443, 0.425_557, 0.0], 1e-5), "{g:?}");
    assert_eq!(format!("{:.3} {:.3}", g[0], g[1]), "0.574 0.426");
}

#[test]
fn soft_gates_use_every_expert() {
    let r = route(&mut ops(), &logits(&[0.0, 1.0, 2.0]), GateMode::Soft, 2, 3, None).expect("routes");
    let z: f32 = [0.0f32, 1.0, 2.0].iter().map(|x| x.exp()).sum();
    let want: Vec<f32> = [0.0f32, 1.0, 2.0].iter().map(|x| x.exp() / z).collect();
    assert!(close(&vec(&r.gates), &want, 1e-6));
    assert_eq!(ids(&r.experts), vec![2, 1]);
}

#[test]
fn ties_go_to_the_lowest_expert_index() {
    for mode in [GateMode::TopkSoftmax, GateMode::DoubleSoftmax, GateMode::Soft] {
        let r = route(&mut ops(), &logits(&[1.0, 2.0, 2.0, 2.0, 1.0]), mode, 2, 5, None).expect("routes");
        assert_eq!(ids(&r.experts), vec![1, 2], "{mode:?}");
    }
}

#[test]
fn gates_are_a_distribution_over_the_selected_experts() {
    tch::manual_seed(3);
    let l = Tensor::randn([4, 16, 8], (Kind::Float, Device::Cpu));
    for mode in [GateMode::TopkSoftmax, GateMode::DoubleSoftmax] {
        let r = route(&mut ops(), &l, mode, 2, 8, None).expect("routes");
        let g = vec(&r.gates);
        let sel = vec(&r.selected);
        assert!(g.iter().all(|&x| x >= 0.0));
        for (row_g, row_s) in g.chunks(8).zip(sel.chunks(8)) {
            assert!((row_g.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            assert_eq!(row_s.iter().sum::<f32>(), 2.0);
            for (x, s) in row_g.iter().zip(row_s) {
                if *s == 0.0 {
                    assert_eq!(*x, 0.0, "unselected expert got a gate");
                }
            }
        }
    }
}

#[test]
fn balance_loss_is_one_when_balanced_and_e_over_k_when_collapsed() {
    let mut o = ops();
    let mask = Tensor::ones([1, 2, 1], (Kind::Float, Device::Cpu));
    let balanced_sel = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0]).view([1, 2, 4]);
    let balanced_g = &balanced_sel * 0.5;
    let loss = balance_loss(&mut o, &balanced_g, &balanced_sel, &mask, 4, 2).expect("loss");
    assert!((loss.double_value(&[0]) - 1.0).abs() < 1e-6);
    let same_sel = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0]).view([1, 2, 4]);
    let same_g = Tensor::from_slice(&[0.7f32, 0.3, 0.0, 0.0, 0.6, 0.4, 0.0, 0.0]).view([1, 2, 4]);
    let loss = balance_loss(&mut o, &same_g, &same_sel, &mask, 4, 2).expect("loss");
    assert!(
        (loss.double_value(&[0]) - 2.0).abs() < 1e-6,
        "E/k = 2, got {}",
        loss.double_value(&[0])
    );
    // Padding tokens do not count.
    let padded_mask = Tensor::from_slice(&[1.0f32, 0.0]).view([1, 2, 1]);
    let mixed_sel = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0]).view([1, 2, 4]);
    let loss = balance_loss(&mut o, &(&mixed_sel * 0.5), &mixed_sel, &padded_mask, 4, 2).expect("loss");
    assert!((loss.double_value(&[0]) - 2.0).abs() < 1e-6);
}

fn bank(cfg: &MethodConfig, seed: i64) -> (ExpertBank<Tensor>, TchTrainables) {
    tch::manual_seed(seed);
    let mut store = TchTrainables::default();
    let b = ExpertBank::init(&mut ops(), &mut store.pp("m"), 6, 5, cfg).expect("init");
    (b, store)
}

#[test]
fn fresh_experts_change_nothing() {
    let (b, _) = bank(&MethodConfig::default(), 0);
    let x = Tensor::randn([2, 3, 6], (Kind::Float, Device::Cpu));
    let g = Tensor::full([2, 3, 8], 0.125, (Kind::Float, Device::Cpu));
    let delta = b.forward(&mut ops(), &x, Some(&g)).expect("forward");
    assert_eq!(delta.abs().max().double_value(&[]), 0.0);
    assert!(
        (b.a.std(true).double_value(&[]) - 0.01).abs() < 0.002,
        "A ~ N(0, 0.01^2)"
    );
}

#[test]
fn stacked_form_equals_the_sparse_sum() {
    for layout in [ExpertLayout::SeparateA, ExpertLayout::SharedA] {
        let cfg = MethodConfig {
            experts: 4,
            rank: 3,
            alpha: 6.0,
            dropout: 0.0,
            expert_layout: layout,
            ..MethodConfig::default()
        };
        let (mut b, _) = bank(&cfg, 1);
        let _guard = tch::no_grad_guard();
        b.b = Tensor::randn([5, 12], (Kind::Float, Device::Cpu));
        let x = Tensor::randn([1, 2, 6], (Kind::Float, Device::Cpu));
        let l = Tensor::randn([1, 2, 4], (Kind::Float, Device::Cpu));
        let r = route(&mut ops(), &l, GateMode::TopkSoftmax, 2, 4, None).expect("routes");
        let stacked = b.forward(&mut ops(), &x, Some(&r.gates)).expect("forward");
        let mut sparse = Tensor::zeros([1, 2, 5], (Kind::Float, Device::Cpu));
        for e in 0..4i64 {
            let a_e = if b.shared_a {
                b.a.shallow_clone()
            } else {
                b.a.narrow(0, e * 3, 3)
            };
            let b_e = b.b.narrow(1, e * 3, 3);
            let g_e = r.gates.narrow(2, e, 1);
            sparse += x.matmul(&a_e.tr()).matmul(&b_e.tr()) * g_e * 2.0;
        }
        let diff = (stacked - sparse).abs().max().double_value(&[]);
        assert!(diff < 1e-6, "{layout:?}: {diff}");
    }
}

#[test]
fn one_expert_no_profile_is_lora() {
    let cuma = MethodConfig {
        experts: 1,
        top_k: 1,
        profile_in_router: false,
        dropout: 0.0,
        ..MethodConfig::default()
    };
    let lora = MethodConfig {
        dropout: 0.0,
        ..MethodConfig::lora(8)
    };
    let (mut cb, _) = bank(&cuma, 5);
    let (mut lb, _) = bank(&lora, 5);
    let _guard = tch::no_grad_guard();
    let b = Tensor::randn([5, 8], (Kind::Float, Device::Cpu));
    cb.b = b.shallow_clone();
    lb.b = b;
    let x = Tensor::randn([2, 4, 6], (Kind::Float, Device::Cpu));
    let l = Tensor::randn([2, 4, 1], (Kind::Float, Device::Cpu));
    let r = route(&mut ops(), &l, GateMode::TopkSoftmax, 1, 1, None).expect("routes");
    assert_eq!(vec(&r.gates).iter().copied().fold(0.0f32, f32::max), 1.0);
    let via_router = cb.forward(&mut ops(), &x, Some(&r.gates)).expect("cuma");
    let plain = lb.forward(&mut ops(), &x, None).expect("lora");
    assert_eq!((via_router - plain).abs().max().double_value(&[]), 0.0);
}

/// In training a layer's adapters multiply their shared input once (routers' token halves and the
/// experts' A of q, k and v in one MatMul); the result equals each router and expert bank computed
/// on its own, for CuMA with a router per module and for HydraLoRA's shared A.
#[test]
fn the_shared_input_product_equals_separate_products() {
    use cuma::models::backbone::Backbone;
    use cuma_model::adapters::{DecoderAdapters, LayerRun, ProfileInput};
    use cuma_model::config::{Method, Target};

    let config = cuma::bench::Shape::Tiny.config();
    let model = Backbone::random(&config, Device::Cpu, 3).expect("random backbone");
    let targets = [Target::QProj, Target::KProj, Target::VProj];
    for (method, profile_dim, layout) in [
        (Method::Cuma, 6, ExpertLayout::SeparateA),
        (Method::Hydralora, 0, ExpertLayout::SharedA),
    ] {
        let m = MethodConfig {
            method,
            targets: targets.into_iter().collect(),
            experts: 4,
            top_k: 2,
            rank: 4,
            expert_layout: layout,
            // Training ops fuse the products; without dropout both sides are deterministic.
            dropout: 0.0,
            ..MethodConfig::default()
        };
        let mut o = TchOps::training(Device::Cpu, false);
        let mut store = TchTrainables::default();
        tch::manual_seed(5);
        let adapters = DecoderAdapters::init(&mut o, &mut store, &model.decoder, &m, profile_dim).expect("adapters");
        let layer = &adapters.layers[0];
        assert_eq!(layer.routers.len(), 3, "{method:?}: one router per module");
        tch::no_grad(|| {
            for module in &layer.modules {
                let mut b = module.bank.b.shallow_clone();
                b.copy_(&Tensor::randn(b.size(), (Kind::Float, Device::Cpu)));
            }
        });
        let x = Tensor::randn([2, 3, config.hidden_size as i64], (Kind::Float, Device::Cpu));
        let profile = Tensor::randn([2, 6], (Kind::Float, Device::Cpu));
        let profile = (profile_dim > 0).then_some(&profile);
        let input = profile.map(|p| ProfileInput::Vector(p.shallow_clone()));
        let parts = adapters.profile_parts(&mut o, input.as_ref()).expect("profile parts");
        let first = parts.into_iter().next().expect("layer 0");
        let mut run = LayerRun::start(&adapters, 0, first, None).expect("start");
        for (module, &target) in layer.modules.iter().zip(&targets) {
            let linear = model.decoder.projection(0, target).expect("projection");
            let shared = run.apply(&mut o, target, &x, linear).expect("apply");
            let r = module.router.expect("routed");
            let router = &layer.routers[r];
            let part = router.profile_part(&mut o, profile).expect("profile part");
            let logits = router.logits(&mut o, &x, &part).expect("logits");
            let routing = route(&mut o, &logits, m.gate, m.top_k, m.experts, None).expect("route");
            let own = linear.forward(&mut o, &x).expect("linear")
                + module.bank.forward(&mut o, &x, Some(&routing.gates)).expect("experts");
            let diff = (&shared - &own).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "{method:?} {target:?}: differs by {diff}");
        }
    }
}

/// A served decoder reads the routers' profile terms computed ahead
/// (`DecoderAdapters::profile_terms`, what `profile_terms.onnx` holds) instead of the profile
/// vector: every layer's projections, its routers' slices at their offsets included, give what
/// the vector gives.
#[test]
fn precomputed_profile_terms_give_what_the_vector_gives() {
    use cuma::models::backbone::Backbone;
    use cuma_model::adapters::{DecoderAdapters, LayerRun, ProfileInput};
    use cuma_model::config::Target;

    let config = cuma::bench::Shape::Tiny.config();
    let model = Backbone::random(&config, Device::Cpu, 4).expect("random backbone");
    let targets = [Target::QProj, Target::VProj];
    let m = MethodConfig {
        targets: targets.into_iter().collect(),
        experts: 4,
        top_k: 2,
        rank: 4,
        ..MethodConfig::default()
    };
    let mut o = TchOps::new(Device::Cpu);
    let mut store = TchTrainables::default();
    tch::manual_seed(6);
    let adapters = DecoderAdapters::init(&mut o, &mut store, &model.decoder, &m, 6).expect("adapters");
    assert!(
        adapters.layers.len() >= 2,
        "the offsets of later layers are what this checks"
    );
    tch::no_grad(|| {
        for module in adapters.layers.iter().flat_map(|l| &l.modules) {
            let mut b = module.bank.b.shallow_clone();
            b.copy_(&Tensor::randn(b.size(), (Kind::Float, Device::Cpu)));
        }
    });
    let x = Tensor::randn([2, 3, config.hidden_size as i64], (Kind::Float, Device::Cpu));
    let profile = Tensor::randn([2, 6], (Kind::Float, Device::Cpu));
    let terms = adapters.profile_terms(&mut o, &profile).expect("terms");
    assert_eq!(terms.size(), [2, 1, adapters.profile_terms_width() as i64]);
    let (vector, terms) = (ProfileInput::Vector(profile), ProfileInput::Terms(terms));
    tch::no_grad(|| {
        let vector_parts = adapters.profile_parts(&mut o, Some(&vector)).expect("vector parts");
        let term_parts = adapters.profile_parts(&mut o, Some(&terms)).expect("term parts");
        assert_eq!(term_parts.len(), adapters.layers.len());
        let parts = vector_parts.into_iter().zip(term_parts).enumerate();
        for (layer, (vector_parts, term_parts)) in parts {
            let mut from_vector = LayerRun::start(&adapters, layer, vector_parts, None).expect("start");
            let mut from_terms = LayerRun::start(&adapters, layer, term_parts, None).expect("start");
            for &target in &targets {
                let linear = model.decoder.projection(layer, target).expect("projection");
                let a = from_vector.apply(&mut o, target, &x, linear).expect("vector");
                let b = from_terms.apply(&mut o, target, &x, linear).expect("terms");
                let diff = (&a - &b).abs().max().double_value(&[]);
                assert!(diff < 1e-6, "layer {layer} {target:?}: differs by {diff}");
            }
            let (rv, rt) = (from_vector.finish(), from_terms.finish());
            for (v, t) in rv.iter().zip(&rt) {
                assert!(v.experts.equal(&t.experts), "layer {layer}: routing differs");
            }
        }
    });
}
