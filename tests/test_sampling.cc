// Sampling policies (coordinator/sampling.h): the uniform draw against the draw
// Strategy::Sample made before the seam, the carbon-aware preference and its
// fairness floor over many rounds with churn, determinism, checkpointed state, the
// intensity trace's strict parser, and the policy inside RoundMachine.
#include <doctest/doctest.h>

#include <algorithm>
#include <map>
#include <set>

#include "greenfed/coordinator/round_machine.h"
#include "greenfed/coordinator/sampling.h"

using namespace greenfed;

namespace {

std::vector<SamplingCandidate> Clients(const std::vector<uint32_t>& indices,
                                       const std::vector<std::string>& countries = {"FRA", "DEU", "USA", "CHN",
                                                                                    "IND"}) {
  std::vector<SamplingCandidate> out;
  for (uint32_t i : indices) out.push_back({i, countries[i % countries.size()], 1.0});
  return out;
}

std::vector<uint32_t> Range(uint32_t n) {
  std::vector<uint32_t> v;
  for (uint32_t i = 0; i < n; ++i) v.push_back(i);
  return v;
}

std::unique_ptr<SamplingPolicy> Make(const std::string& name, uint32_t fairness_rounds = 5,
                                     std::shared_ptr<const IntensityTrace> trace = nullptr) {
  SamplingOptions o;
  o.name = name;
  o.fairness_rounds = fairness_rounds;
  o.trace = std::move(trace);
  if (o.trace) o.intensity_trace_path = "trace.csv";
  auto p = MakeSamplingPolicy(o);
  REQUIRE_MESSAGE(p.ok(), p.status().ToString());
  return std::move(p).value();
}

SamplingRequest Req(uint64_t round, double fraction, uint64_t seed = 1, uint32_t attempt = 1, int hour = -1) {
  SamplingRequest r;
  r.round = round;
  r.attempt = attempt;
  r.seed = seed;
  r.fraction = fraction;
  r.min_fit = 1;
  r.utc_hour = hour;
  return r;
}

double Annual(const std::string& country) { return CarbonTable::BuiltIn().Lookup(country)->g_per_kwh; }

std::string Trace24(const std::string& country, double g, int odd_hour = -1, double odd_g = 0) {
  std::string s;
  for (int h = 0; h < 24; ++h) s += country + "," + std::to_string(h) + "," + std::to_string(h == odd_hour ? odd_g : g) + "\n";
  return s;
}

}  // namespace

TEST_CASE("uniform sampling is the draw Strategy::Sample made before the policy seam, bit for bit") {
  // Golden values printed by Strategy::Sample at commit 23250df (the last one with
  // the draw inside Strategy), for (available, round, attempt, seed, fraction, min_fit).
  const std::vector<std::vector<uint32_t>> rounds_1_to_5 = {
      {1, 6, 7, 8, 9}, {1, 2, 5, 7, 8}, {0, 1, 4, 5, 7}, {1, 4, 5, 7, 9}, {1, 3, 5, 6, 9}};
  auto uniform = Make("uniform");
  for (uint64_t r = 1; r <= 5; ++r) {
    SamplingRequest req = Req(r, 0.5);
    req.min_fit = 2;
    CHECK(UniformDraw(Range(10), r, 1, 1, 0.5, 2) == rounds_1_to_5[r - 1]);
    const SamplingDecision d = uniform->Sample(Clients(Range(10)), req);
    CHECK(d.indices == rounds_1_to_5[r - 1]);
    CHECK(d.note.empty());
  }
  CHECK(UniformDraw({1, 3, 4, 7, 8, 11}, 3, 2, 42, 0.3, 2) == std::vector<uint32_t>{1, 3});
  CHECK(UniformDraw(Range(100), 7, 1, 12345, 0.1, 2) ==
        std::vector<uint32_t>{11, 25, 27, 32, 50, 53, 62, 67, 83, 97});
  SamplingRequest req = Req(3, 0.3, 42, 2);
  req.min_fit = 2;
  CHECK(uniform->Sample(Clients({1, 3, 4, 7, 8, 11}), req).indices == std::vector<uint32_t>{1, 3});
  CHECK(uniform->SaveState().empty());
  CHECK(uniform->RestoreState({1}).code() == Code::kDataLoss);
  CHECK(SampleCount(10, 0.5, 2) == 5);
  CHECK(SampleCount(10, 0.1, 4) == 4);
  CHECK(SampleCount(3, 1.0, 5) == 3);
}

TEST_CASE("carbon-aware sampling takes the cleanest grids first, k as uniform") {
  auto policy = Make("carbon-aware", 100);  // a floor too far away to matter here
  // 10 clients over FRA, DEU, USA, CHN, IND: the cleanest half is what it takes.
  std::vector<std::pair<double, uint32_t>> by_g;
  for (uint32_t i = 0; i < 10; ++i) by_g.push_back({Annual(Clients(Range(10))[i].country), i});
  std::sort(by_g.begin(), by_g.end());
  const SamplingDecision d = policy->Sample(Clients(Range(10)), Req(1, 0.5));
  REQUIRE(d.indices.size() == 5);
  const double worst_taken = by_g[4].first;
  for (uint32_t i : d.indices) CHECK(Annual(Clients(Range(10))[i].country) <= worst_taken);
  CHECK(std::find(d.indices.begin(), d.indices.end(), 0u) != d.indices.end());  // FRA
  CHECK(std::find(d.indices.begin(), d.indices.end(), 5u) != d.indices.end());  // FRA
  CHECK(std::find(d.indices.begin(), d.indices.end(), 4u) == d.indices.end());  // IND
  CHECK(d.due == 0);
  CHECK(d.note.find("carbon-aware annual: 0 FRA ") == 0);
  // A large sample names 16 clients and summarises the rest.
  auto big = Make("carbon-aware", 100);
  const SamplingDecision many = big->Sample(Clients(Range(100), {"FRA"}), Req(1, 0.5));
  CHECK(many.indices.size() == 50);
  CHECK(many.note.find(", ... (34 more; mean 53 sampled, 53 available)") != std::string::npos);
  // PUE multiplies: a FRA client at PUE 5 (5 x 56) loses to a DEU one at PUE 1 when one slot is left.
  auto p2 = Make("carbon-aware", 100);
  std::vector<SamplingCandidate> two = {{0, "FRA", 5.0}, {1, "DEU", 1.0}};
  if (Annual("FRA") * 5 > Annual("DEU")) {
    CHECK(p2->Sample(two, Req(1, 0.5)).indices == std::vector<uint32_t>{1});
  }
}

TEST_CASE("carbon-aware fairness floor: every available client is sampled at least once in any K rounds, "
          "with clients joining and leaving") {
  for (const uint32_t K : {1u, 2u, 3u, 5u, 8u}) {
    for (const double fraction : {0.1, 0.2, 0.5}) {
      CAPTURE(K);
      CAPTURE(fraction);
      auto policy = Make("carbon-aware", K);
      constexpr uint32_t kClients = 20;
      constexpr uint64_t kRounds = 400;
      // Streak bookkeeping: run[i] = consecutive available rounds without a sample.
      std::map<uint32_t, uint64_t> unsampled_run;
      uint64_t state = 7 + K;
      uint64_t over_k = 0;
      for (uint64_t round = 1; round <= kRounds; ++round) {
        std::vector<uint32_t> present;
        for (uint32_t i = 0; i < kClients; ++i) {
          // Churn: each client is absent ~15% of the rounds, in bursts; client 0 always stays.
          state = state * 6364136223846793005ull + 1442695040888963407ull;
          const bool absent = i != 0 && ((state >> 33) % 100) < 15 && (round / 7 + i) % 3 == 0;
          if (!absent) present.push_back(i);
        }
        const uint32_t k = SampleCount(static_cast<uint32_t>(present.size()), fraction, 1);
        SamplingDecision d = policy->Sample(Clients(present), Req(round, fraction, 99));
        std::set<uint32_t> chosen(d.indices.begin(), d.indices.end());
        // A retry of the same round (attempt 2) now and then: a client sent a Fit in
        // either attempt was sampled in this round.
        if (round % 11 == 0) {
          d = policy->Sample(Clients(present), Req(round, fraction, 99, 2));
          chosen.insert(d.indices.begin(), d.indices.end());
        }
        if (d.indices.size() > k) ++over_k;
        CHECK(d.indices.size() >= k);
        for (uint32_t i = 0; i < kClients; ++i) {
          const bool here = std::find(present.begin(), present.end(), i) != present.end();
          if (!here) {
            unsampled_run.erase(i);  // a client that leaves starts a new window when it returns
            continue;
          }
          if (chosen.count(i)) {
            unsampled_run[i] = 0;
          } else {
            ++unsampled_run[i];
          }
          // Never K available rounds in a row without a sample.
          CHECK_MESSAGE(unsampled_run[i] < K, "client " << i << " unsampled for " << unsampled_run[i]
                                                        << " available rounds at round " << round);
        }
        for (uint32_t i : d.indices) {
          CHECK(std::find(present.begin(), present.end(), i) != present.end());  // only the available
        }
      }
      // With K * k < n the floor must sample more than k in some rounds; with K * k >= n rarely.
      if (K == 1) CHECK(over_k > 0);
    }
  }
}

TEST_CASE("carbon-aware sampling is deterministic, with ties broken by a hash seeded by the run seed") {
  const std::vector<std::string> all_fra = {"FRA"};
  auto run = [&](uint64_t seed) {
    auto p = Make("carbon-aware", 50);
    std::vector<std::vector<uint32_t>> out;
    for (uint64_t r = 1; r <= 6; ++r) out.push_back(p->Sample(Clients(Range(10), all_fra), Req(r, 0.3, seed)).indices);
    return out;
  };
  CHECK(run(3) == run(3));
  bool differs = false;
  for (uint64_t s = 4; s < 14 && !differs; ++s) differs = run(s) != run(3);
  CHECK(differs);  // equal intensities: the seed decides, not the index order
}

TEST_CASE("carbon-aware state survives SaveState/RestoreState, malformed state is refused by name") {
  auto a = Make("carbon-aware", 3);
  for (uint64_t r = 1; r <= 10; ++r) (void)a->Sample(Clients(Range(10)), Req(r, 0.2));
  const std::vector<uint8_t> saved = a->SaveState();
  CHECK_FALSE(saved.empty());
  auto b = Make("carbon-aware", 3);
  REQUIRE(b->RestoreState(saved).ok());
  auto fresh = Make("carbon-aware", 3);
  bool fresh_differs = false;
  for (uint64_t r = 11; r <= 30; ++r) {
    const auto x = a->Sample(Clients(Range(10)), Req(r, 0.2)).indices;
    CHECK(b->Sample(Clients(Range(10)), Req(r, 0.2)).indices == x);
    fresh_differs = fresh_differs || fresh->Sample(Clients(Range(10)), Req(r, 0.2)).indices != x;
  }
  CHECK(fresh_differs);  // the state matters: without it round 11 on differs
  auto c = Make("carbon-aware", 3);
  std::vector<uint8_t> cut(saved.begin(), saved.end() - 1);
  CHECK(c->RestoreState(cut).message().find("bytes of 28-byte entries") != std::string::npos);
  std::vector<uint8_t> version = saved;
  version[0] = 9;
  CHECK(c->RestoreState(version).message().find("has version 9") != std::string::npos);
  CHECK(c->RestoreState({1, 0}).message().find("shorter than its 12-byte header") != std::string::npos);
  CHECK(c->RestoreState({}).ok());  // nothing sampled yet
}

TEST_CASE("intensity trace: parsed strictly, every bad line named with file:line") {
  const std::string header = "country,utc_hour,g_co2e_per_kwh\n";
  auto good = IntensityTrace::Parse("# comment\n" + header + Trace24("FRA", 50, 3, 600) + "\n" + Trace24("IND", 700),
                                    "t.csv");
  REQUIRE_MESSAGE(good.ok(), good.status().ToString());
  double g = 0;
  CHECK(good->Lookup("FRA", 3, &g));
  CHECK(g == 600);
  CHECK(good->Lookup("IND", 23, &g));
  CHECK(g == 700);
  CHECK_FALSE(good->Lookup("DEU", 3, &g));
  CHECK_FALSE(good->Lookup("FRA", 24, &g));
  CHECK(good->Countries() == std::vector<std::string>{"FRA", "IND"});

  struct Bad {
    std::string text;
    std::string message;
  };
  const std::string fra = Trace24("FRA", 50);
  const std::vector<Bad> bad = {
      {"", "t.csv: no header line"},
      {header, "t.csv: the trace has a header but no rows"},
      {"country,hour,g\n" + fra, "t.csv:1: header is 'country,hour,g'"},
      {header + "FRA,0\n", "t.csv:2: 2 fields, expected 3"},
      {header + "fra,0,50\n", "t.csv:2: country 'fra' is not an upper-case code"},
      {header + "FRA,24,50\n", "t.csv:2: utc_hour '24' is not an integer in 0..23"},
      {header + "FRA,-1,50\n", "t.csv:2: utc_hour '-1' is not an integer"},
      {header + "FRA,1.5,50\n", "t.csv:2: utc_hour '1.5' is not an integer"},
      {header + "FRA,0,abc\n", "t.csv:2: g_co2e_per_kwh 'abc' is not a finite number"},
      {header + "FRA,0,nan\n", "t.csv:2: g_co2e_per_kwh 'nan' is not a finite number"},
      {header + "FRA,0,\n", "t.csv:2: g_co2e_per_kwh '' is not a finite number"},
      {header + "FRA,0,-3\n", "t.csv:2: g_co2e_per_kwh -3 is outside 0..5000"},
      {header + "FRA,0,56000\n", "t.csv:2: g_co2e_per_kwh 56000 is outside 0..5000"},
      {header + fra + "FRA,7,50\n", "t.csv:26: FRA hour 7 is given twice (first on line 9)"},
      {header + "FRA,0,50\nFRA,1,50\n", "t.csv:2: FRA lacks utc_hour 2,3,4"},
      {header + "FRA,\"0,50\n", "t.csv:2: "},
  };
  for (const auto& b : bad) {
    CAPTURE(b.text);
    auto t = IntensityTrace::Parse(b.text, "t.csv");
    REQUIRE_FALSE(t.ok());
    CHECK(t.status().code() == Code::kInvalidArgument);
    CHECK_MESSAGE(t.status().message().find(b.message) != std::string::npos, t.status().message());
  }
  CHECK(IntensityTrace::Load("/nonexistent/trace.csv").status().message().find("/nonexistent/trace.csv") !=
        std::string::npos);
}

TEST_CASE("carbon-aware sampling reads the trace at the round's UTC hour, the table otherwise") {
  // FRA is clean all day but dirty at 18h UTC in this trace; DEU is not in the trace.
  auto trace = IntensityTrace::Parse("country,utc_hour,g_co2e_per_kwh\n" + Trace24("FRA", 40, 18, 900), "t.csv");
  REQUIRE(trace.ok());
  auto shared = std::make_shared<const IntensityTrace>(std::move(trace).value());
  const std::vector<SamplingCandidate> two = {{0, "FRA", 1.0}, {1, "DEU", 1.0}};
  auto p = Make("carbon-aware", 100, shared);
  CHECK(p->Sample(two, Req(1, 0.5, 1, 1, 12)).indices == std::vector<uint32_t>{0});
  const SamplingDecision at18 = p->Sample(two, Req(2, 0.5, 1, 1, 18));
  CHECK(at18.indices == std::vector<uint32_t>{1});
  CHECK(at18.note.find("carbon-aware 18h UTC: 1 DEU ") == 0);
  CHECK(p->Describe() == "carbon-aware(fairness_rounds=100, trace=trace.csv)");
  // Unknown hour: annual figures (FRA cleaner than DEU).
  CHECK(p->Sample(two, Req(3, 0.5)).indices == std::vector<uint32_t>{0});
}

TEST_CASE("sampling options are validated with messages that name the flag") {
  SamplingOptions o;
  o.name = "greedy";
  CHECK(ValidateSamplingOptions(o).message().find("--sampling must be one of uniform, carbon-aware") == 0);
  o.name = "carbon-aware";
  o.fairness_rounds = 0;
  CHECK(ValidateSamplingOptions(o).message().find("--fairness-rounds") == 0);
  o.fairness_rounds = 5;
  auto trace = IntensityTrace::Parse("country,utc_hour,g_co2e_per_kwh\n" + Trace24("XYZ", 40), "t.csv");
  REQUIRE(trace.ok());
  o.trace = std::make_shared<const IntensityTrace>(*trace);
  o.intensity_trace_path = "t.csv";
  CHECK(ValidateSamplingOptions(o).message().find("country XYZ is not in the carbon table") != std::string::npos);
  o.name = "uniform";
  CHECK(ValidateSamplingOptions(o).message().find("--intensity-trace needs --sampling carbon-aware") == 0);
  RoundOptions r;
  r.sampling.name = "nope";
  CHECK(ValidateRoundOptions(r).message().find("--sampling") == 0);
}

namespace {

Parameters Model(float v) { return {MakeFloatBlob("w", {2}, {v, v})}; }

JoinEvent JoinFrom(const std::string& peer, const std::string& country) {
  JoinMsg j;
  j.client_id = "id-" + peer;
  j.country = country;
  return JoinEvent{peer, j, ""};
}

std::set<uint32_t> Sampled(const RoundMachine& m) {
  std::set<uint32_t> out;
  for (const auto& p : m.pending()) out.insert(m.ClientByPeer(p)->index);
  return out;
}

std::vector<Action> FinishRound(RoundMachine* m, uint64_t round, double t) {
  const std::vector<std::string> pending(m->pending().begin(), m->pending().end());
  for (const auto& p : pending) {
    FitResMsg r;
    r.round = round;
    r.num_examples = 10;
    r.train_loss = 0.5;
    r.parameters = Model(1.0f);
    (void)m->Handle(FitResEvent{p, r}, t);
  }
  return m->Handle(CentralEvalEvent{round, 0.5, 1.0}, t);
}

RoundOptions CarbonOptions() {
  RoundOptions o;
  o.num_clients = 10;
  o.min_available_clients = 10;
  o.min_fit_clients = 2;
  o.fraction_fit = 0.3;
  o.max_rounds = 40;
  o.target_accuracy = 0.99;
  o.sampling.name = "carbon-aware";
  o.sampling.fairness_rounds = 4;
  return o;
}

}  // namespace

TEST_CASE("RoundMachine with carbon-aware sampling: countries from Join, the floor, a log line, and a snapshot "
          "that holds the state of the completed round, not of the next draw") {
  const std::vector<std::string> countries = {"FRA", "DEU", "USA", "CHN", "IND"};
  RoundMachine m(CarbonOptions());
  m.NoteUtcHour(14);
  (void)m.Start(0, Model(0));
  std::vector<Action> a;
  for (int i = 0; i < 10; ++i) a = m.Handle(JoinFrom("p" + std::to_string(i), countries[i % 5]), 0);
  CHECK(m.sampling().Describe() == "carbon-aware(fairness_rounds=4)");
  bool logged = false;
  for (const auto& act : a) {
    if (auto* l = std::get_if<LogAction>(&act)) logged = logged || l->text.find("; carbon-aware 14h UTC: 0 FRA") != std::string::npos;
  }
  CHECK(logged);
  std::map<uint32_t, uint64_t> last;
  std::map<uint64_t, MachineSnapshot> snaps;   // after round r
  std::map<uint64_t, std::set<uint32_t>> drawn;  // round r's sample
  uint32_t floor_used = 0;
  for (uint64_t r = 1; r <= 14; ++r) {
    drawn[r] = Sampled(m);
    for (uint32_t i : drawn[r]) last[i] = r;
    for (uint32_t i = 0; i < 10; ++i) {
      CHECK_MESSAGE(r - last[i] < 4, "client " << i << " at round " << r);
      if (last[i] == r && i % 5 != 0 && drawn[r].size() == 3) ++floor_used;
    }
    (void)FinishRound(&m, r, static_cast<double>(r));
    snaps[r] = m.Snapshot();
  }
  CHECK(floor_used > 0);  // dirty grids were sampled: the floor did its work
  // A machine resumed from any round's snapshot draws the next rounds as the original did.
  for (uint64_t from = 2; from <= 8; ++from) {
    CAPTURE(from);
    RoundMachine resumed(CarbonOptions());
    resumed.NoteUtcHour(14);
    (void)resumed.Resume(100, snaps[from]);
    for (int i = 0; i < 10; ++i) (void)resumed.Handle(JoinFrom("p" + std::to_string(i), countries[i % 5]), 100);
    for (uint64_t r = from + 1; r <= from + 6; ++r) {
      REQUIRE(resumed.round() == r);
      CHECK(Sampled(resumed) == drawn[r]);
      (void)FinishRound(&resumed, r, 100 + static_cast<double>(r));
    }
  }
  // Uniform and carbon-aware differ on the same federation.
  RoundOptions u = CarbonOptions();
  u.sampling = SamplingOptions{};
  RoundMachine um(u);
  (void)um.Start(0, Model(0));
  for (int i = 0; i < 10; ++i) (void)um.Handle(JoinFrom("p" + std::to_string(i), countries[i % 5]), 0);
  CHECK(um.sampling().Describe() == "uniform");
  const std::vector<uint32_t> draw = UniformDraw(Range(10), 1, 1, u.seed, u.fraction_fit, u.min_fit_clients);
  CHECK(Sampled(um) == std::set<uint32_t>(draw.begin(), draw.end()));
  CHECK(um.Snapshot().sampling_state.empty());
}

TEST_CASE("the example trace in examples/carbon parses and covers the mixed federation's countries") {
  auto trace = IntensityTrace::Load(std::string(GREENFED_SOURCE_DIR) + "/examples/carbon/intensity-trace.csv");
  REQUIRE_MESSAGE(trace.ok(), trace.status().ToString());
  CHECK(trace->Countries() == std::vector<std::string>{"CHN", "DEU", "FRA", "IND", "USA"});
  SamplingOptions o;
  o.name = "carbon-aware";
  o.trace = std::make_shared<const IntensityTrace>(*trace);
  o.intensity_trace_path = "examples/carbon/intensity-trace.csv";
  CHECK(ValidateSamplingOptions(o).ok());
}
