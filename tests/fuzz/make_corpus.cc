// Writes the committed seed corpus under tests/fuzz/corpus/ (run by hand after a protocol
// change: build target greenfed_fuzz_make_corpus, then
//   ./build-asan/tests/fuzz/greenfed_fuzz_make_corpus tests/fuzz/corpus).
// decode/: Encode() of one real message of each type, in the fuzz_frames.h format, and of
// Fit/FitRes with group params encoded by each codec (protocol v4).
// round_machine/: event scripts in the format of fuzz_round_machine.cc: full runs, timeouts,
// failures, late results, a rejoin while sampled (the DropClient use-after-free).
// Reproducers that libFuzzer wrote for later findings are committed as they are; this
// program neither writes nor removes them.
#include <cstdio>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "fuzz_frames.h"
#include "greenfed/codec.h"
#include "greenfed/protocol.h"

namespace {

using namespace greenfed;

bool Write(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
  if (!out) std::fprintf(stderr, "greenfed_fuzz_make_corpus: cannot write %s\n", path.c_str());
  return static_cast<bool>(out);
}

Parameters Model() {
  return {MakeFloatBlob("fc.weight", {2, 3}, {0.1f, -0.2f, 0.3f, -0.4f, 0.5f, -0.6f}),
          MakeFloatBlob("fc.bias", {2}, {0.01f, -0.01f})};
}

std::vector<EnergyRecord> Energy() {
  EnergyRecord r;
  r.phase = Phase::kFit;
  r.round = 1;
  r.wall_s = 1.5;
  r.cpu_s = 1.2;
  r.energy_j = 20.0;
  r.source = EnergySource::kModel;
  EnergyRecord c;
  c.phase = Phase::kComm;
  c.round = 1;
  c.bytes_sent = 4096;
  c.bytes_received = 8192;
  c.energy_j = 0.01;
  c.source = EnergySource::kComm;
  return {r, c};
}

// `params` encoded by codec `name`; false (with a message) when the codec refuses.
bool EncodeParams(const std::string& name, const Parameters& params, EncodedParams* out) {
  auto codec = MakeCodec(name);
  if (!codec.ok()) {
    std::fprintf(stderr, "greenfed_fuzz_make_corpus: %s\n", codec.status().ToString().c_str());
    return false;
  }
  auto bytes = (*codec)->Encode(params, nullptr);
  if (!bytes.ok()) {
    std::fprintf(stderr, "greenfed_fuzz_make_corpus: %s\n", bytes.status().ToString().c_str());
    return false;
  }
  out->codec = name;
  out->specs = SpecsOf(params);
  out->bytes = std::move(bytes).value();
  return true;
}

std::vector<std::pair<std::string, Message>> Messages() {
  std::vector<std::pair<std::string, Message>> m;
  JoinMsg join;
  join.client_id = "host-1";
  join.requested_index = 2;
  join.num_examples = 600;
  join.capabilities = {"delta", "evaluate", "meter:model"};
  join.country = "DEU";
  join.pue = 1.2;
  m.emplace_back("join", join);
  WelcomeMsg w;
  w.client_index = 2;
  w.partition.scheme = "dirichlet";
  w.partition.num_clients = 4;
  w.task = "fashion_mnist";
  w.model = "cnn";
  w.run_id = "run-1";
  m.emplace_back("welcome", w);
  FitMsg fit;
  fit.round = 3;
  TrainConfig train;
  train.seed = 99;
  train.send_delta = true;
  PutTrainConfig(train, &fit.config);
  fit.config["proximal_mu"] = 0.01;
  fit.config["strategy"] = std::string("scaffold");
  fit.parameters = Model();
  fit.groups["control"] = Model();
  m.emplace_back("fit", fit);
  FitResMsg res;
  res.round = 3;
  res.is_delta = true;
  res.num_examples = 600;
  res.train_loss = 0.7;
  res.fit_s = 2.5;
  res.parameters = Model();
  res.groups["control"] = Model();
  res.energy = Energy();
  m.emplace_back("fit_res", res);
  EvaluateMsg ev;
  ev.round = 3;
  ev.parameters = Model();
  m.emplace_back("evaluate", ev);
  EvaluateResMsg er;
  er.round = 3;
  er.loss = 0.5;
  er.accuracy = 0.8;
  er.num_examples = 100;
  er.energy = Energy();
  m.emplace_back("evaluate_res", er);
  HeartbeatMsg hb;
  hb.round = 3;
  hb.energy = Energy();
  m.emplace_back("heartbeat", hb);
  // Protocol v4: group params encoded by a codec, one frame ahead of the other groups.
  for (const auto& [name, codec_name] : {std::make_pair("fit_res_int8", "int8"),
                                         std::make_pair("fit_res_topk", "topk:0.5"),
                                         std::make_pair("fit_res_int8_channel", "int8:channel")}) {
    FitResMsg coded = res;
    coded.parameters.clear();
    if (!EncodeParams(codec_name, Model(), &coded.encoded)) continue;
    m.emplace_back(name, coded);
  }
  FitMsg fit_fp16 = fit;
  fit_fp16.config[kConfigDownlinkCodec] = std::string("fp16");
  fit_fp16.parameters.clear();
  if (EncodeParams("fp16", Model(), &fit_fp16.encoded)) m.emplace_back("fit_fp16", fit_fp16);
  m.emplace_back("shutdown", ShutdownMsg{"max rounds"});
  ErrorMsg err;
  err.code = ErrorCode::kFitFailed;
  err.round = 3;
  err.message = "local training failed";
  m.emplace_back("error", err);
  return m;
}

// ---- round machine scripts (opcodes of fuzz_round_machine.cc) ----
using Script = std::vector<uint8_t>;
// 3 clients, all needed, min_fit 2, fraction 1, 3 rounds, target 1.0, round timeout 10 s,
// heartbeat timeout 5 s, 3 attempts, no federated eval, eval timeout 5 s, seed 7; client wait
// 0 s, max idle 60 s, no exclusion, no shard bounds; strategy fedavg (byte 17: index into
// fuzz_round_machine.cc's list; 18, 19: its settings).
const Script kOptions = {2, 2, 1, 3, 2, 5, 9, 4, 2, 0, 4, 7, 0, 59, 0, 0, 0, 0, 0, 0};
// identity: 0 = none (--insecure, client_id stands in); >= 128 = CURVE key (identity - 128) % 6.
void Join(Script* s, uint8_t peer, uint8_t id, uint8_t identity = 0) {
  s->insert(s->end(), {0, peer, id, 0xFF, 100, 0, identity});
}
void FitRes(Script* s, uint8_t peer) {
  s->insert(s->end(), {1, peer, 0 /*current round*/, 100, 0 /*right shape*/, 16, 0});
  s->insert(s->end(), {1, 2, 3, 4, 5, 6, 7, 8});  // 8 float values
}
void Central(Script* s, uint8_t acc) { s->insert(s->end(), {5, 0, acc, 16}); }
void Tick(Script* s, uint8_t half_seconds) { s->insert(s->end(), {4, half_seconds}); }

std::vector<std::pair<std::string, Script>> Scripts() {
  std::vector<std::pair<std::string, Script>> out;
  Script full = kOptions;
  for (uint8_t p = 0; p < 3; ++p) Join(&full, p, p);
  for (int r = 0; r < 3; ++r) {
    for (uint8_t p = 0; p < 3; ++p) FitRes(&full, p);
    Central(&full, 100);
  }
  out.emplace_back("full_run", full);

  Script timeout = kOptions;
  for (uint8_t p = 0; p < 3; ++p) Join(&timeout, p, p);
  FitRes(&timeout, 0);
  FitRes(&timeout, 1);
  timeout.insert(timeout.end(), {3, 0, 3, 1});  // heartbeats
  Tick(&timeout, 8);                            // 4 s: peer 2 still alive
  Tick(&timeout, 16);                           // 8 s more: deadline and heartbeat timeout
  Central(&timeout, 50);
  out.emplace_back("timeout", timeout);

  Script failures = kOptions;
  for (uint8_t p = 0; p < 3; ++p) Join(&failures, p, p);
  failures.insert(failures.end(), {2, 0, 2, 1});   // two fit failures
  FitRes(&failures, 2);
  failures.insert(failures.end(), {1, 2, 1, 100, 2, 16, 0});  // late result, wrong shape
  failures.insert(failures.end(), {7, 1, 0, 100, 50});        // unexpected eval result
  failures.insert(failures.end(), {6, 0});                    // central eval failed
  out.emplace_back("failures", failures);

  // A client rejoins under a new connection while it is sampled: DropClient erased the map
  // node, then read its key (heap-use-after-free in round_machine.cc before the fix).
  Script rejoin = kOptions;
  for (uint8_t p = 0; p < 3; ++p) Join(&rejoin, p, p);
  Join(&rejoin, 5, 0);  // peer-5 says it is host-0
  FitRes(&rejoin, 1);
  FitRes(&rejoin, 2);
  Tick(&rejoin, 30);
  out.emplace_back("rejoin_while_sampled", rejoin);

  // The same with CURVE identities: the new connection with the same key replaces the old one.
  Script curve = kOptions;
  for (uint8_t p = 0; p < 3; ++p) Join(&curve, p, p, static_cast<uint8_t>(128 + p));
  Join(&curve, 5, 0, 128);  // peer-5 holds key-0
  FitRes(&curve, 1);
  FitRes(&curve, 2);
  Tick(&curve, 30);
  out.emplace_back("curve_rejoin_while_sampled", curve);

  // Exclusion after repeated failures and a restart from a checkpoint mid-run.
  Script resume = kOptions;
  resume[14] = 1;  // exclude after 1 failure
  resume[15] = 2;  // for 2 rounds
  for (uint8_t p = 0; p < 3; ++p) Join(&resume, p, p);
  for (uint8_t p = 0; p < 3; ++p) FitRes(&resume, p);
  Central(&resume, 100);
  resume.push_back(10);  // Snapshot + Resume on a fresh machine
  for (uint8_t p = 0; p < 3; ++p) Join(&resume, p, p);
  resume.insert(resume.end(), {2, 0});  // a failure: excluded
  FitRes(&resume, 1);
  FitRes(&resume, 2);
  Central(&resume, 100);
  out.emplace_back("exclude_and_resume", resume);

  // Finite but huge deltas (FLT_MAX) from one of two clients: Decode and ValidateAgainst
  // accept them, and after 3 rounds the average overflows to Inf (GREENFED_FUZZ_STRICT=1).
  Script agg = kOptions;
  agg[0] = 1;  // 2 clients
  agg[1] = 1;  // both needed
  agg[2] = 0;  // min_fit 1
  agg[4] = 4;  // 5 rounds
  Join(&agg, 0, 0);
  Join(&agg, 1, 1);
  for (int r = 0; r < 3; ++r) {
    agg.insert(agg.end(), {1, 0, 0, 1, 1 /*raw float bits*/, 16, 1 /*delta*/});
    for (int i = 0; i < 8; ++i) agg.insert(agg.end(), {0xff, 0xff, 0x7f, 0x7f});
    agg.insert(agg.end(), {1, 1, 0, 1, 0, 16, 1, 0, 0, 0, 0, 0, 0, 0, 0});
    Central(&agg, 10);
  }
  out.emplace_back("strict_agg_overflow_flt_max_delta", agg);

  // The full run under each other strategy (fedavgm momentum 0.5, krum f=1 keep 2, ...), and
  // a checkpoint resume mid-run so that strategy state goes through Snapshot/Resume.
  const char* names[] = {"fedavg", "fedavgm", "fedadagrad", "fedadam", "fedyogi", "fedmedian", "fedtrimmedavg", "krum"};
  for (uint8_t k = 1; k < 8; ++k) {
    Script st = kOptions;
    st[17] = k;
    st[18] = 5;
    st[19] = 2;
    for (uint8_t p = 0; p < 3; ++p) Join(&st, p, p);
    for (int r = 0; r < 3; ++r) {
      for (uint8_t p = 0; p < 3; ++p) FitRes(&st, p);
      Central(&st, 100);
      if (r == 0) {
        st.push_back(10);
        for (uint8_t p = 0; p < 3; ++p) Join(&st, p, p);
      }
    }
    out.emplace_back(std::string("strategy_") + names[k] + "_resume", st);
  }
  // The same under fedprox (byte 17 = 240) and scaffold (241).
  for (const auto& [pick, name] : {std::make_pair(uint8_t{240}, "fedprox"), std::make_pair(uint8_t{241}, "scaffold")}) {
    Script st = kOptions;
    st[17] = pick;
    st[18] = 5;
    st[19] = 2;
    for (uint8_t p = 0; p < 3; ++p) Join(&st, p, p);
    for (int r = 0; r < 3; ++r) {
      for (uint8_t p = 0; p < 3; ++p) FitRes(&st, p);
      Central(&st, 100);
      if (r == 0) {
        st.push_back(10);
        for (uint8_t p = 0; p < 3; ++p) Join(&st, p, p);
      }
    }
    out.emplace_back(std::string("strategy_") + name + "_resume", st);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: greenfed_fuzz_make_corpus CORPUS_DIR (with decode/ and round_machine/ in it)\n");
    return 2;
  }
  const std::string dir = argv[1];
  bool ok = true;
  for (const auto& [name, msg] : Messages()) {
    ok &= Write(dir + "/decode/" + name, fuzz::JoinFrames(Encode(msg)));
  }
  for (const auto& [name, script] : Scripts()) ok &= Write(dir + "/round_machine/" + name, script);
  // A raw-frames event carrying a real Join, so the mutator starts from a valid header.
  Script raw = kOptions;
  const auto join = fuzz::JoinFrames(Encode(Messages()[0].second));
  if (join.size() < 256) {
    raw.insert(raw.end(), {8, 4, static_cast<uint8_t>(join.size())});
    raw.insert(raw.end(), join.begin(), join.end());
    ok &= Write(dir + "/round_machine/raw_join", raw);
  }
  return ok ? 0 : 1;
}
