// Carbon and energy budgets (coordinator/budget.h): the pure decision, and the round
// machine stopping before the round that would go past the budget.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <string>

#include "greenfed/coordinator/budget.h"
#include "greenfed/coordinator/round_machine.h"

using namespace greenfed;

namespace {

BudgetSpend Spend(double g, double wh) {
  BudgetSpend s;
  s.co2e_g = g;
  s.wh = wh;
  return s;
}

Parameters Model(float v) { return {MakeFloatBlob("w", {2}, {v, v})}; }

FitResEvent Result(const std::string& peer, uint64_t round) {
  FitResMsg r;
  r.round = round;
  r.num_examples = 10;
  r.train_loss = 0.5;
  r.parameters = Model(1.0f);
  return FitResEvent{peer, r};
}

template <typename T>
std::vector<T> All(const std::vector<Action>& actions) {
  std::vector<T> out;
  for (const auto& a : actions) {
    if (auto* t = std::get_if<T>(&a)) out.push_back(*t);
  }
  return out;
}

}  // namespace

TEST_CASE("budget: the next round may start while total + last round stays within the budget") {
  BudgetOptions b;
  b.max_co2e_g = 12.5;
  // 11.0 + 1.5 = 12.5: exactly at the budget is allowed.
  CHECK_FALSE(BudgetStopReason(b, Spend(11.0, 0), Spend(1.5, 0), 7).has_value());
  // 11.6 + 1.5 = 13.1 > 12.5: round 7 would go past it.
  auto over = BudgetStopReason(b, Spend(11.6, 0), Spend(1.5, 0), 7);
  REQUIRE(over.has_value());
  CHECK(*over == "budget: max-co2e-g 12.5 would be exceeded by round 7 (estimated 13.1 g)");
  // Already past it (the last round overshot): stop too.
  CHECK(BudgetStopReason(b, Spend(13.0, 0), Spend(0.0, 0), 3).has_value());
}

TEST_CASE("budget: Wh limit, both limits, and no limit") {
  BudgetOptions wh;
  wh.max_wh = 2;
  auto over = BudgetStopReason(wh, Spend(1000, 1.5), Spend(1000, 0.6), 4);
  REQUIRE(over.has_value());
  CHECK(*over == "budget: max-wh 2 would be exceeded by round 4 (estimated 2.1 Wh)");
  CHECK_FALSE(BudgetStopReason(wh, Spend(1000, 1.0), Spend(1000, 0.6), 4).has_value());

  BudgetOptions both;
  both.max_co2e_g = 1;
  both.max_wh = 1;
  // Both exceeded: the carbon limit is named.
  CHECK(BudgetStopReason(both, Spend(0.9, 0.9), Spend(0.2, 0.2), 2)->rfind("budget: max-co2e-g 1 ", 0) == 0);
  CHECK(BudgetStopReason(both, Spend(0.1, 0.9), Spend(0.1, 0.2), 2)->rfind("budget: max-wh 1 ", 0) == 0);

  BudgetOptions none;
  CHECK_FALSE(none.enabled());
  CHECK_FALSE(BudgetStopReason(none, Spend(1e9, 1e9), Spend(1e9, 1e9), 2).has_value());
  // Three significant digits without an exponent, also for small and large figures.
  BudgetOptions tiny;
  tiny.max_co2e_g = 1e-6;
  CHECK(*BudgetStopReason(tiny, Spend(0.002134, 0), Spend(0.001, 0), 2) ==
        "budget: max-co2e-g 1e-06 would be exceeded by round 2 (estimated 0.00313 g)");
  BudgetOptions large;
  large.max_co2e_g = 1000;
  CHECK(*BudgetStopReason(large, Spend(12000, 0), Spend(345, 0), 9) ==
        "budget: max-co2e-g 1000 would be exceeded by round 9 (estimated 12300 g)");
}

TEST_CASE("budget: limits are validated with the flag's name") {
  BudgetOptions b;
  CHECK(ValidateBudgetOptions(b).ok());
  b.max_co2e_g = -1;
  CHECK(ValidateBudgetOptions(b).message().find("--max-co2e-g") != std::string::npos);
  b.max_co2e_g = std::numeric_limits<double>::infinity();
  CHECK_FALSE(ValidateBudgetOptions(b).ok());
  b.max_co2e_g = 0;
  b.max_wh = std::nan("");
  CHECK(ValidateBudgetOptions(b).message().find("--max-wh") != std::string::npos);
  RoundOptions o;
  o.budget.max_wh = -0.5;
  CHECK(ValidateRoundOptions(o).message().find("--max-wh") != std::string::npos);
}

TEST_CASE("budget: the round machine stops before the round that would go past it, not failed") {
  RoundOptions o;
  o.num_clients = 1;
  o.min_available_clients = 1;
  o.min_fit_clients = 1;
  o.max_rounds = 10;
  o.target_accuracy = 0.99;
  o.budget.max_co2e_g = 5;
  RoundMachine m(o);
  (void)m.Start(0, Model(0));
  std::vector<Action> a = m.Handle(JoinEvent{"A", JoinMsg{}, ""}, 0);
  // Each round costs 2 g: after round 1, 2 + 2 = 4 <= 5, round 2 starts; after
  // round 2, 4 + 2 = 6 > 5: the run stops before round 3.
  for (uint64_t r = 1; r <= 2; ++r) {
    REQUIRE(m.pending().count("A") == 1);
    (void)m.Handle(Result("A", r), static_cast<double>(r));
    m.NoteSpend(r, Spend(2.0 * static_cast<double>(r), 0), Spend(2.0, 0));
    a = m.Handle(CentralEvalEvent{r, 0.5, 1.0}, static_cast<double>(r));
    CHECK(All<RoundDoneAction>(a).size() == 1);
  }
  auto stops = All<StopAction>(a);
  REQUIRE(stops.size() == 1);
  CHECK(stops[0].reason == "budget: max-co2e-g 5 would be exceeded by round 3 (estimated 6 g)");
  CHECK_FALSE(stops[0].reached);
  CHECK_FALSE(stops[0].failed);
  CHECK(m.state() == MachineState::kDone);
  CHECK(m.round() == 2);
  // No fit for round 3 was sent; the client was told to shut down.
  for (const auto& s : All<SendAction>(a)) CHECK_FALSE(std::holds_alternative<FitMsg>(s.message));
}

TEST_CASE("budget: the target wins over the budget in the same round") {
  RoundOptions o;
  o.num_clients = 1;
  o.min_available_clients = 1;
  o.min_fit_clients = 1;
  o.target_accuracy = 0.9;
  o.budget.max_co2e_g = 1;
  RoundMachine m(o);
  (void)m.Start(0, Model(0));
  (void)m.Handle(JoinEvent{"A", JoinMsg{}, ""}, 0);
  (void)m.Handle(Result("A", 1), 1);
  m.NoteSpend(1, Spend(3, 0), Spend(3, 0));
  auto stops = All<StopAction>(m.Handle(CentralEvalEvent{1, 0.95, 0.1}, 1));
  REQUIRE(stops.size() == 1);
  CHECK(stops[0].reached);
}
