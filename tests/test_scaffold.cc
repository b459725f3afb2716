// FedProx and SCAFFOLD on the server side, against hand computations on small
// tensors (Li et al. 2020; Karimireddy et al. 2020, Algorithm 1), and the round
// machine's capability check at Join. No sockets.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>

#include "greenfed/coordinator/round_machine.h"
#include "greenfed/coordinator/strategy.h"
#include "greenfed/task.h"

using namespace greenfed;

namespace {

Parameters W(float a, float b) { return {MakeFloatBlob("w", {2}, {a, b})}; }
TensorGroups Control(float a, float b) { return {{"control", {MakeFloatBlob("w", {2}, {a, b})}}}; }
std::vector<float> V(const Parameters& p) { return FloatValues(p[0]); }

std::unique_ptr<Strategy> Make(StrategyOptions o) {
  auto s = MakeStrategy(o);
  REQUIRE_MESSAGE(s.ok(), s.status().ToString());
  return std::move(s).value();
}

StrategyOptions Scaffold(uint32_t n, double eta_g) {
  StrategyOptions o;
  o.name = "scaffold";
  o.federation_size = n;
  o.server_learning_rate = eta_g;
  return o;
}

struct Result {
  Parameters update;
  TensorGroups groups;
  bool is_delta = false;
  uint64_t n = 1;
};

// One round: the control group ConfigureFit sends (via *sent), every result added,
// then the server step.
Parameters Round(Strategy* s, const Parameters& global, const std::vector<Result>& results,
                 TensorGroups* sent = nullptr) {
  auto agg = s->BeginRound(global);
  REQUIRE_MESSAGE(agg.ok(), agg.status().ToString());
  ConfigMap config;
  TensorGroups groups;
  s->ConfigureFit(1, &config, &groups);
  if (sent != nullptr) *sent = groups;
  for (const auto& r : results) {
    const Status added = (*agg)->Add(r.update, r.groups, r.is_delta, r.n);
    REQUIRE_MESSAGE(added.ok(), added.ToString());
  }
  auto combined = (*agg)->Result();
  REQUIRE_MESSAGE(combined.ok(), combined.status().ToString());
  auto next = s->Update(global, std::move(combined).value());
  REQUIRE_MESSAGE(next.ok(), next.status().ToString());
  return std::move(next).value();
}

}  // namespace

TEST_CASE("scaffold: server update x += eta_g mean(dy) and c += |S|/N mean(dc) by hand") {
  auto s = Make(Scaffold(/*N=*/10, /*eta_g=*/0.5));
  CHECK(s->Describe() == "scaffold(server_learning_rate=0.5)");
  CHECK(s->RequiredCapabilities() == std::vector<std::string>{"scaffold"});
  // Round 1 from x = (1, 2), c = 0; three of ten clients, examples ignored (the
  // paper's means are unweighted). dy: (1, 0), (0, 3), (2, 0) -> mean (1, 1);
  // dc: (0.5, -1), (1.5, 1), (1, 3) -> mean (1, 1).
  TensorGroups sent;
  const Parameters x1 = Round(s.get(), W(1, 2),
                              {{W(2, 2), Control(0.5f, -1), false, 10},
                               {W(1, 5), Control(1.5f, 1), false, 1000},
                               {W(2, 0), Control(1, 3), true, 1}},
                              &sent);
  REQUIRE(sent.count("control") == 1);
  CHECK(V(sent.at("control")) == std::vector<float>{0, 0});  // c = 0 at the start
  CHECK(V(x1)[0] == doctest::Approx(1.5));                   // 1 + 0.5 * 1
  CHECK(V(x1)[1] == doctest::Approx(2.5));                   // 2 + 0.5 * 1
  // Round 2: c = 3/10 * (1, 1) = (0.3, 0.3) travels. Two clients: dy (2, -2), (0, 0)
  // -> (1, -1); dc (1, 0), (0, 2) -> (0.5, 1); c = 0.3 + 2/10 * (0.5, 1) = (0.4, 0.5).
  const Parameters x2 =
      Round(s.get(), x1, {{W(3.5f, 0.5f), Control(1, 0), false, 1}, {W(1.5f, 2.5f), Control(0, 2), false, 1}}, &sent);
  CHECK(V(sent.at("control"))[0] == doctest::Approx(0.3));
  CHECK(V(sent.at("control"))[1] == doctest::Approx(0.3));
  CHECK(V(x2)[0] == doctest::Approx(2.0));
  CHECK(V(x2)[1] == doctest::Approx(2.0));
  auto agg = s->BeginRound(x2);
  REQUIRE(agg.ok());
  ConfigMap config;
  TensorGroups groups;
  s->ConfigureFit(3, &config, &groups);
  CHECK(V(groups.at("control"))[0] == doctest::Approx(0.4));
  CHECK(V(groups.at("control"))[1] == doctest::Approx(0.5));
  CHECK(config.empty());
}

TEST_CASE("scaffold: save/restore of c gives the identical next round") {
  auto a = Make(Scaffold(4, 1.0));
  const Parameters x1 = Round(a.get(), W(0, 0), {{W(1, 1), Control(1, 2)}, {W(3, -1), Control(-3, 4)}});
  const std::vector<uint8_t> saved = a->SaveState();
  REQUIRE(saved.size() == 4 + 8 + 2 * 8);
  auto b = Make(Scaffold(4, 1.0));
  REQUIRE(b->RestoreState(saved).ok());
  const std::vector<Result> next = {{W(2, 2), Control(0.25f, 0.5f)}, {W(0, 1), Control(1, 1)}};
  TensorGroups sent_a, sent_b;
  const Parameters xa = Round(a.get(), x1, next, &sent_a);
  const Parameters xb = Round(b.get(), x1, next, &sent_b);
  CHECK(xa[0].data == xb[0].data);
  CHECK(sent_a.at("control")[0].data == sent_b.at("control")[0].data);
  CHECK(V(sent_b.at("control"))[0] == doctest::Approx(0.5 * (1 - 3) / 2));  // restored c, not zeros
  CHECK(a->SaveState() == b->SaveState());
  // A fresh strategy without the state sends zeros: the restore is what matters.
  auto fresh = Make(Scaffold(4, 1.0));
  TensorGroups sent_fresh;
  (void)Round(fresh.get(), x1, next, &sent_fresh);
  CHECK(V(sent_fresh.at("control"))[0] == 0.0f);

  CHECK(b->RestoreState({1, 2, 3}).code() == Code::kDataLoss);
  std::vector<uint8_t> truncated = saved;
  truncated.pop_back();
  CHECK(b->RestoreState(truncated).message().find("do not hold 2 control values") != std::string::npos);
  // c of the wrong size for the model is refused when the round starts.
  auto c = Make(Scaffold(4, 1.0));
  REQUIRE(c->RestoreState(saved).ok());
  CHECK(c->BeginRound({MakeFloatBlob("w", {3}, {0, 0, 0})}).status().message() ==
        "scaffold: the control variate has 2 entries but the model has 3 float parameters");
}

TEST_CASE("scaffold: results without a valid control group are refused with a named reason") {
  auto s = Make(Scaffold(4, 1.0));
  auto agg = s->BeginRound(W(0, 0));
  REQUIRE(agg.ok());
  CHECK((*agg)->Add(W(1, 1), {}, false, 1).message() ==
        "scaffold: the result lacks tensor group 'control' (the client's delta c_i)");
  TensorGroups extra = Control(1, 1);
  extra["momentum"] = W(0, 0);
  CHECK((*agg)->Add(W(1, 1), extra, false, 1).message() ==
        "scaffold: unexpected tensor group 'momentum' (takes only 'params' and 'control')");
  TensorGroups wrong = {{"control", {MakeFloatBlob("w", {3}, {1, 1, 1})}}};
  CHECK((*agg)->Add(W(1, 1), wrong, false, 1).message().find("group 'control'") == 0);
  TensorGroups huge = Control(1e30f, 0);
  CHECK((*agg)->Add(W(1, 1), huge, false, 1).message().find("group 'control'") == 0);
  CHECK((*agg)->num_updates() == 0);
  StrategyOptions no_n = Scaffold(0, 1.0);
  CHECK(MakeStrategy(no_n).status().message().find("federation size") != std::string::npos);
}

TEST_CASE("fedprox: FedAvg aggregation with proximal_mu in every Fit and mu required") {
  StrategyOptions o;
  o.name = "fedprox";
  CHECK(MakeStrategy(o).status().message() ==
        "--proximal-mu is required with --strategy fedprox (as in Flower's FedProx; e.g. 0.01)");
  o.proximal_mu = -0.5;
  CHECK(MakeStrategy(o).status().message() == "--proximal-mu must be finite and >= 0, got -0.5");
  StrategyOptions avg;
  avg.proximal_mu = 0.1;
  CHECK(MakeStrategy(avg).status().message() == "--proximal-mu applies to --strategy fedprox only, not fedavg");

  o.proximal_mu = 0.01;
  auto prox = Make(o);
  CHECK(prox->Describe() == "fedprox(proximal_mu=0.01)");
  CHECK(prox->RequiredCapabilities() == std::vector<std::string>{"fedprox"});
  ConfigMap config;
  TensorGroups groups;
  prox->ConfigureFit(1, &config, &groups);
  CHECK(std::get<double>(config.at("proximal_mu")) == 0.01);
  CHECK(groups.empty());

  // mu = 0: the same parameters as FedAvg, bit for bit (the client-side half is in
  // the task tests).
  o.proximal_mu = 0.0;
  auto prox0 = Make(o);
  StrategyOptions fedavg;
  auto plain = Make(fedavg);
  const std::vector<Result> results = {{W(0.1f, 0.7f), {}, false, 3}, {W(0.3f, -0.2f), {}, false, 7},
                                       {W(1e-3f, 5.f), {}, true, 11}};
  Parameters a = W(0.5f, 0.25f), b = W(0.5f, 0.25f);
  for (int r = 0; r < 3; ++r) {
    a = Round(prox0.get(), a, results);
    b = Round(plain.get(), b, results);
    CHECK(a[0].data == b[0].data);
  }
  // fedavg takes no groups back.
  auto agg = plain->BeginRound(W(0, 0));
  CHECK((*agg)->Add(W(1, 1), Control(1, 1), false, 1).message() ==
        "unexpected tensor group 'control': this strategy sends none and takes only the model ('params')");
}

namespace {

JoinMsg JoinWith(const std::string& id, std::vector<std::string> caps) {
  JoinMsg j;
  j.client_id = id;
  j.country = "FRA";
  j.capabilities = std::move(caps);
  return j;
}

template <typename T>
std::vector<const T*> Messages(const std::vector<Action>& actions) {
  std::vector<const T*> out;
  for (const auto& a : actions) {
    if (const auto* s = std::get_if<SendAction>(&a)) {
      if (const auto* m = std::get_if<T>(&s->message)) out.push_back(m);
    }
  }
  return out;
}

}  // namespace

TEST_CASE("round machine: a Join lacking the strategy's required capability is refused INCOMPATIBLE") {
  for (const char* name : {"scaffold", "fedprox"}) {
    CAPTURE(name);
    RoundOptions o;
    o.num_clients = 2;
    o.min_available_clients = 2;
    o.min_fit_clients = 2;
    o.strategy.name = name;
    if (std::string(name) == "fedprox") o.strategy.proximal_mu = 0.1;
    REQUIRE(ValidateRoundOptions(o).ok());
    RoundMachine m(o);
    (void)m.Start(0, W(0, 0));
    auto refused = m.Handle(JoinEvent{"A", JoinWith("id-A", {"delta", "evaluate", "meter"}), ""}, 0);
    const auto errors = Messages<ErrorMsg>(refused);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0]->code == ErrorCode::kIncompatible);
    CHECK(errors[0]->message.find(std::string("needs capability '") + name + "'") != std::string::npos);
    CHECK(Messages<WelcomeMsg>(refused).empty());

    auto a = m.Handle(JoinEvent{"A", JoinWith("id-A", {"delta", name}), ""}, 0);
    CHECK(Messages<WelcomeMsg>(a).size() == 1);
    auto b = m.Handle(JoinEvent{"B", JoinWith("id-B", {name}), ""}, 0);
    REQUIRE(m.state() == MachineState::kFitting);
    const auto fits = Messages<FitMsg>(b);
    REQUIRE(fits.size() == 2);
    if (std::string(name) == "scaffold") {
      REQUIRE(fits[0]->groups.count("control") == 1);
      CHECK(V(fits[0]->groups.at("control")) == std::vector<float>{0, 0});
    } else {
      CHECK(std::get<double>(fits[0]->config.at("proximal_mu")) == 0.1);
      CHECK(fits[0]->groups.empty());
    }
    CHECK(ParseTrainConfig(fits[0]->config).ok());
  }
}

TEST_CASE("round machine: scaffold results carry their control group through OnFitRes") {
  RoundOptions o;
  o.num_clients = 4;  // N = 4, two of them sampled
  o.min_available_clients = 2;
  o.min_fit_clients = 2;
  o.fraction_fit = 0.5;
  o.max_rounds = 3;
  o.strategy.name = "scaffold";
  RoundMachine m(o);
  (void)m.Start(0, W(0, 0));
  (void)m.Handle(JoinEvent{"A", JoinWith("id-A", {"scaffold"}), ""}, 0);
  (void)m.Handle(JoinEvent{"B", JoinWith("id-B", {"scaffold"}), ""}, 0);
  REQUIRE(m.state() == MachineState::kFitting);
  FitResMsg ra;
  ra.round = 1;
  ra.num_examples = 5;
  ra.parameters = W(2, 0);
  ra.groups = Control(1, 1);
  FitResMsg rb = ra;
  rb.parameters = W(0, 2);
  rb.groups = Control(3, -1);
  (void)m.Handle(FitResEvent{"A", ra}, 1);
  (void)m.Handle(FitResEvent{"B", rb}, 1);
  REQUIRE(m.state() == MachineState::kEvaluating);
  CHECK(V(m.global()) == std::vector<float>{1, 1});  // x + mean dy
  // c = |S|/N mean dc = 2/4 * (2, 0) = (1, 0) travels in round 2's Fits.
  auto next = m.Handle(CentralEvalEvent{1, 0.1, 2.0}, 2);
  REQUIRE(m.state() == MachineState::kFitting);
  const auto fits = Messages<FitMsg>(next);
  REQUIRE(fits.size() == 2);
  CHECK(V(fits[0]->groups.at("control")) == std::vector<float>{1, 0});
  // A result without its control group is refused as a bad update, named.
  FitResMsg bad = rb;
  bad.round = 2;
  bad.groups.clear();
  auto refused = m.Handle(FitResEvent{"B", bad}, 3);
  const auto errors = Messages<ErrorMsg>(refused);
  REQUIRE(errors.size() == 1);
  CHECK(errors[0]->code == ErrorCode::kBadUpdate);
  CHECK(errors[0]->message.find("lacks tensor group 'control'") != std::string::npos);
}
