// Strategies against hand computations on small tensors, with the update rules as
// the papers write them (strategy.h lists them). No sockets.
#include <doctest/doctest.h>

#include <cmath>

#include "greenfed/coordinator/round_machine.h"
#include "greenfed/coordinator/strategy.h"

using namespace greenfed;

namespace {

Parameters W(float a, float b) { return {MakeFloatBlob("w", {2}, {a, b})}; }

std::unique_ptr<Strategy> Make(StrategyOptions o) {
  auto s = MakeStrategy(o);
  REQUIRE_MESSAGE(s.ok(), s.status().ToString());
  return std::move(s).value();
}

StrategyOptions Named(const std::string& name) {
  StrategyOptions o;
  o.name = name;
  return o;
}

// One round: every (weights, examples) pair added, then the server step.
Parameters Round(Strategy* s, const Parameters& global, const std::vector<std::pair<Parameters, uint64_t>>& updates) {
  auto agg = s->BeginRound(global);
  REQUIRE(agg.ok());
  for (const auto& [w, n] : updates) REQUIRE((*agg)->Add(w, {}, false, n).ok());
  auto combined = (*agg)->Result();
  REQUIRE_MESSAGE(combined.ok(), combined.status().ToString());
  auto next = s->Update(global, std::move(combined).value());
  REQUIRE_MESSAGE(next.ok(), next.status().ToString());
  return std::move(next).value();
}

std::vector<float> V(const Parameters& p) { return FloatValues(p[0]); }

}  // namespace

TEST_CASE("strategy: fedavg is the example-weighted mean") {
  auto s = Make(Named("fedavg"));
  const auto next = Round(s.get(), W(0, 0), {{W(1, 2), 10}, {W(3, 6), 30}});
  CHECK(V(next)[0] == doctest::Approx(2.5));  // (10*1 + 30*3) / 40
  CHECK(V(next)[1] == doctest::Approx(5.0));
  CHECK(s->Describe() == "fedavg");
}

TEST_CASE("strategy: fedavgm (Hsu et al. 2019) applies server momentum to the mean's delta") {
  StrategyOptions o = Named("fedavgm");
  o.server_momentum = 0.5;
  o.server_learning_rate = 1.0;
  auto s = Make(o);
  // Round 1: delta 1, m = 1, w = 1. Round 2: delta 2, m = 0.5 * 1 + 2 = 2.5, w = 1 + 2.5.
  auto w1 = Round(s.get(), W(0, 0), {{W(1, 1), 5}});
  CHECK(V(w1)[0] == doctest::Approx(1.0));
  auto w2 = Round(s.get(), w1, {{W(3, 3), 5}});
  CHECK(V(w2)[0] == doctest::Approx(3.5));
  // Momentum 0 is FedAvg.
  StrategyOptions plain = Named("fedavgm");
  auto p = Make(plain);
  CHECK(V(Round(p.get(), W(0, 0), {{W(1, 1), 5}, {W(3, 3), 5}}))[0] == doctest::Approx(2.0));
}

TEST_CASE("strategy: fedadagrad, fedadam and fedyogi follow Reddi et al. 2021, Algorithm 2, with Flower's defaults") {
  const double d = 1.0;  // pseudo-gradient of the first round: mean 1 - global 0
  SUBCASE("fedadam: eta 0.1, beta_1 0.9, beta_2 0.99, tau 1e-9") {
    auto s = Make(Named("fedadam"));
    CHECK(s->Describe() == "fedadam(eta=0.1, beta_1=0.9, beta_2=0.99, tau=1e-09)");
    const double tau = 1e-9, m = 0.1 * d, v = 0.99 * tau * tau + 0.01 * d * d;
    const double expected = 0.1 * m / (std::sqrt(v) + tau);
    CHECK(V(Round(s.get(), W(0, 0), {{W(1, 1), 4}}))[0] == doctest::Approx(expected).epsilon(1e-6));
  }
  SUBCASE("fedyogi: eta 0.01, tau 1e-3; v moves by sign(v - d^2)") {
    auto s = Make(Named("fedyogi"));
    const double tau = 1e-3, m = 0.1 * d;
    const double v = tau * tau - 0.01 * d * d * -1.0;  // v0 - (1 - b2) d^2 sign(v0 - d^2), v0 = tau^2 < d^2
    const double expected = 0.01 * m / (std::sqrt(v) + tau);
    CHECK(V(Round(s.get(), W(0, 0), {{W(1, 1), 4}}))[0] == doctest::Approx(expected).epsilon(1e-6));
  }
  SUBCASE("fedadagrad: eta 0.1, beta_1 0, v accumulates d^2") {
    auto s = Make(Named("fedadagrad"));
    const double tau = 1e-9;
    auto w1 = Round(s.get(), W(0, 0), {{W(1, 1), 4}});
    const double x1 = 0.1 * d / (std::sqrt(tau * tau + d * d) + tau);
    CHECK(V(w1)[0] == doctest::Approx(x1).epsilon(1e-6));
    // Round 2: mean 2 from x1, so d2 = 2 - x1; v = tau^2 + 1 + d2^2.
    auto w2 = Round(s.get(), w1, {{W(2, 2), 4}});
    const double d2 = 2.0 - static_cast<double>(static_cast<float>(x1));
    const double x2 = static_cast<float>(x1) + 0.1 * d2 / (std::sqrt(tau * tau + d * d + d2 * d2) + tau);
    CHECK(V(w2)[0] == doctest::Approx(x2).epsilon(1e-6));
  }
}

TEST_CASE("strategy: save and restore give identical next-round results") {
  for (const char* name : {"fedadam", "fedyogi", "fedadagrad", "fedavgm"}) {
    CAPTURE(name);
    StrategyOptions o = Named(name);
    o.server_momentum = 0.9;
    auto a = Make(o);
    auto w1 = Round(a.get(), W(0, 0), {{W(1, 2), 3}});
    const std::vector<uint8_t> state = a->SaveState();
    auto b = Make(o);
    REQUIRE(b->RestoreState(state).ok());
    const auto next_a = Round(a.get(), w1, {{W(2, -1), 3}});
    const auto next_b = Round(b.get(), w1, {{W(2, -1), 3}});
    CHECK(next_a[0].data == next_b[0].data);
  }
  auto adam = Make(Named("fedadam"));
  (void)Round(adam.get(), W(0, 0), {{W(1, 2), 3}});
  std::vector<uint8_t> state = adam->SaveState();
  auto yogi = Make(Named("fedyogi"));
  CHECK(yogi->RestoreState(state).message().find("another server optimiser") != std::string::npos);
  state.pop_back();
  CHECK(Make(Named("fedadam"))->RestoreState(state).message().find("truncated") != std::string::npos);
  CHECK(Make(Named("fedavg"))->RestoreState({1, 2, 3}).message().find("keeps no state") != std::string::npos);
  CHECK(Make(Named("fedmedian"))->SaveState().empty());
}

TEST_CASE("strategy: fedmedian and fedtrimmedavg are coordinate-wise and ignore examples") {
  auto med = Make(Named("fedmedian"));
  CHECK(V(Round(med.get(), W(0, 0), {{W(1, 5), 1}, {W(2, -3), 1}, {W(100, 4), 1000}})) ==
        std::vector<float>{2, 4});
  CHECK(V(Round(med.get(), W(0, 0), {{W(1, 0), 1}, {W(2, 0), 1}, {W(3, 0), 1}, {W(100, 0), 1}}))[0] ==
        doctest::Approx(2.5));
  StrategyOptions t = Named("fedtrimmedavg");  // Flower's default beta 0.2: 5 updates -> cut 1 each end
  auto trim = Make(t);
  CHECK(V(Round(trim.get(), W(0, 0), {{W(-50, 0), 1}, {W(1, 0), 1}, {W(2, 0), 1}, {W(3, 0), 9}, {W(100, 0), 1}}))[0] ==
        doctest::Approx(2.0));
  t.trim_beta = 0.25;  // 4 updates -> cut 1 each end
  auto trim4 = Make(t);
  CHECK(V(Round(trim4.get(), W(0, 0), {{W(1, 0), 1}, {W(2, 0), 1}, {W(3, 0), 1}, {W(100, 0), 1}}))[0] ==
        doctest::Approx(2.5));
  // Too few updates to trim anything is an error, not a silent mean.
  t.trim_beta = 0.4;
  auto agg = Make(t)->BeginRound(W(0, 0));
  REQUIRE((*agg)->Add(W(1, 1), {}, false, 1).ok());
  REQUIRE((*agg)->Add(W(2, 2), {}, false, 1).ok());
  CHECK((*agg)->Result().ok());  // floor(0.4 * 2) = 0
  REQUIRE((*agg)->Add(W(2, 2), {}, false, 1).ok());
  REQUIRE((*agg)->Add(W(2, 2), {}, false, 1).ok());
  REQUIRE((*agg)->Add(W(2, 2), {}, false, 1).ok());
  CHECK((*agg)->Result().ok());  // floor(0.4 * 5) = 2 of each end of 5 leaves 1
}

TEST_CASE("strategy: krum picks the update nearest its neighbours, multi-krum averages the best by examples") {
  StrategyOptions o = Named("krum");
  o.num_malicious_clients = 1;  // n - f - 2 = 1 nearest neighbour in each score
  const std::vector<std::pair<Parameters, uint64_t>> updates = {
      {W(0, 0), 10}, {W(1, 0), 30}, {W(0, 1), 10}, {W(100, 100), 10}};
  // Scores: a = 1, b = 1, c = 1, d = 99^2 + 100^2 = 19801: a wins the tie by order.
  CHECK(V(Round(Make(o).get(), W(0, 0), updates)) == std::vector<float>{0, 0});
  o.num_clients_to_keep = 2;  // a and b, weighted 10 : 30
  const auto multi = V(Round(Make(o).get(), W(0, 0), updates));
  CHECK(multi[0] == doctest::Approx(0.75));
  CHECK(multi[1] == doctest::Approx(0.0));
  CHECK(Make(o)->Describe() == "krum(num_malicious_clients=1, num_clients_to_keep=2)");
}

TEST_CASE("strategy: names and settings are validated with the flag they came from") {
  CHECK(MakeStrategy(Named("fedsgd")).status().message().find("--strategy must be one of fedavg, fedavgm") !=
        std::string::npos);
  StrategyOptions o = Named("fedavgm");
  o.server_momentum = 1.0;
  CHECK(MakeStrategy(o).status().message() == "--server-momentum must be in [0, 1)");
  o = Named("fedtrimmedavg");
  o.trim_beta = 0.5;
  CHECK(MakeStrategy(o).status().message() == "--trim-beta must be in [0, 0.5)");
  RoundOptions ro;
  ro.strategy.name = "nope";
  CHECK(ValidateRoundOptions(ro).message().find("--strategy must be one of") != std::string::npos);
}

TEST_CASE("strategy: in the round machine, fedmedian keeps one x100 client from moving the model, fedavg does not") {
  for (const char* name : {"fedavg", "fedmedian"}) {
    CAPTURE(name);
    RoundOptions o;
    o.num_clients = 5;
    o.min_available_clients = 5;
    o.min_fit_clients = 5;
    o.max_rounds = 2;
    o.strategy.name = name;
    RoundMachine m(o);
    (void)m.Start(0, W(0, 0));
    for (const char* p : {"A", "B", "C", "D", "E"}) {
      JoinMsg j;
      j.client_id = std::string("id-") + p;
      j.country = "FRA";
      (void)m.Handle(JoinEvent{p, j, ""}, 0);
    }
    REQUIRE(m.state() == MachineState::kFitting);
    for (const char* p : {"A", "B", "C", "D"}) {
      FitResMsg r;
      r.round = 1;
      r.num_examples = 10;
      r.parameters = W(1, 1);
      (void)m.Handle(FitResEvent{p, r}, 1);
    }
    FitResMsg evil;
    evil.round = 1;
    evil.num_examples = 10;
    evil.parameters = W(100, 100);  // the honest update scaled x100
    (void)m.Handle(FitResEvent{"E", evil}, 1);
    REQUIRE(m.state() == MachineState::kEvaluating);
    const float w = V(m.global())[0];
    if (std::string(name) == "fedavg") {
      CHECK(w == doctest::Approx(20.8));  // (4 * 1 + 100) / 5
    } else {
      CHECK(w == doctest::Approx(1.0));
    }
  }
}
