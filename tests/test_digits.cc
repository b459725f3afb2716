// The digits task (examples/digits): the CSV reader's error paths on hand-made files,
// the real file from Debian's python3-sklearn, the stratified split, shard sizes,
// the models' gradients, and training to a sensible accuracy on the real data.
#include <doctest/doctest.h>
#include <zlib.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "digits/data.h"
#include "digits/model.h"
#include "digits/task.h"
#include "greenfed/partition.h"
#include "run_helpers.h"

namespace {

using greenfed::testing::TempDir;
using greenfed::testing::WriteText;
using greenfed::Code;
using greenfed::PartitionSpec;
using greenfed::TaskOptions;
using greenfed::TaskRole;
using namespace greenfed::digits;

const std::string kRealFile = std::string(kDefaultDataDir) + "/" + kDigitsFile;

// A valid row: 64 pixels equal to `pixel`, then `label`.
std::string Row(int pixel, int label) {
  std::string row;
  for (int i = 0; i < 64; ++i) row += std::to_string(pixel) + ",";
  return row + std::to_string(label);
}

std::string ReadError(const std::string& path) {
  auto r = ReadDigitsCsv(path);
  REQUIRE_FALSE(r.ok());
  return r.status().message();
}

TEST_CASE("digits: the real file has 1797 rows of 64 pixels 0..16 and labels 0..9") {
  auto data = ReadDigitsCsv(kRealFile);
  REQUIRE_MESSAGE(data.ok(), data.status().ToString());
  CHECK(data->count() == 1797);
  CHECK(data->pixels.size() == 1797 * 64);
  const auto h = greenfed::LabelHistogram(data->labels, [&] {
    std::vector<uint32_t> all(data->count());
    for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<uint32_t>(i);
    return all;
  }(), 10);
  // Class counts of scikit-learn's digits (load_digits, DESCR: ~180 per class).
  CHECK(h == std::vector<int64_t>{178, 182, 177, 183, 181, 182, 181, 179, 174, 180});
  // The first row of the file.
  CHECK(std::vector<uint8_t>(data->pixels.begin(), data->pixels.begin() + 8) ==
        std::vector<uint8_t>{0, 0, 5, 13, 9, 1, 0, 0});
  CHECK(data->labels[0] == 0);
}

TEST_CASE("digits: the reader names the file, the line and the field of the first problem") {
  TempDir dir;
  const std::string f = dir.File("d.csv");
  SUBCASE("too few fields") {
    WriteText(f, Row(1, 2) + "\n" + Row(1, 2).substr(2) + "\n");
    CHECK(ReadError(f) == f + ":2: 64 fields, expected 65 (64 pixels and a label)");
  }
  SUBCASE("too many fields") {
    WriteText(f, Row(1, 2) + ",3\n");
    CHECK(ReadError(f) == f + ":1: more than 65 fields (64 pixels and a label)");
  }
  SUBCASE("a pixel out of range") {
    std::string row = Row(1, 2);
    row.replace(0, 1, "17");
    WriteText(f, Row(0, 0) + "\n" + Row(0, 0) + "\n" + row + "\n");
    CHECK(ReadError(f) == f + ":3: field 1: pixel 17 is out of range (expected 0..16)");
  }
  SUBCASE("a label out of range") {
    WriteText(f, Row(1, 10) + "\n");
    CHECK(ReadError(f) == f + ":1: field 65: label 10 is out of range (expected 0..9)");
  }
  SUBCASE("a huge number saturates and is out of range") {
    std::string row = Row(1, 2);
    row.replace(0, 1, "99999999999999999999");
    WriteText(f, row + "\n");
    CHECK(ReadError(f) == f + ":1: field 1: pixel 99999999999999999999 is out of range (expected 0..16)");
  }
  SUBCASE("not an integer") {
    std::string row = Row(1, 2);
    row.replace(2, 1, "1.5");
    WriteText(f, row + "\n");
    CHECK(ReadError(f) == f + ":1: field 2: '1.5' is not a non-negative integer");
  }
  SUBCASE("a negative number") {
    std::string row = Row(1, 2);
    row.replace(2, 1, "-1");
    WriteText(f, row + "\n");
    CHECK(ReadError(f) == f + ":1: field 2: '-1' is not a non-negative integer");
  }
  SUBCASE("an empty field") {
    std::string row = Row(1, 2);
    row.replace(2, 1, "");
    WriteText(f, row + "\n");
    CHECK(ReadError(f) == f + ":1: field 2: empty");
  }
  SUBCASE("an empty line in the middle") {
    WriteText(f, Row(1, 2) + "\n\n" + Row(1, 2) + "\n");
    CHECK(ReadError(f) == f + ":2: empty line (expected 65 comma-separated fields)");
  }
  SUBCASE("an empty file") {
    WriteText(f, "");
    CHECK(ReadError(f) == f + ": empty file (expected rows of 64 pixels and a label)");
  }
  SUBCASE("a missing file names the Debian package when it is the default file") {
    auto r = ReadDigitsCsv(dir.File(kDigitsFile));
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().code() == Code::kNotFound);
    CHECK(r.status().message() ==
          dir.File(kDigitsFile) + ": cannot open: No such file or directory (Debian: apt-get install python3-sklearn)");
  }
  SUBCASE("a cut-off gzip stream") {
    auto real = ReadDigitsCsv(kRealFile);
    REQUIRE(real.ok());
    const std::string gz = dir.File("cut.csv.gz");
    REQUIRE(WriteDigitsCsv(gz, *real).ok());
    std::filesystem::resize_file(gz, std::filesystem::file_size(gz) / 2);
    auto r = ReadDigitsCsv(gz);
    REQUIRE_FALSE(r.ok());
    CHECK(r.status().message().rfind(gz + ":", 0) == 0);
  }
  SUBCASE("CRLF line ends and a missing final newline are accepted") {
    WriteText(f, Row(3, 4) + "\r\n" + Row(16, 9));
    auto r = ReadDigitsCsv(f);
    REQUIRE_MESSAGE(r.ok(), r.status().ToString());
    CHECK(r->labels == std::vector<uint8_t>{4, 9});
    CHECK(r->pixels.back() == 16);
  }
}

TEST_CASE("digits: WriteDigitsCsv round-trips, gzipped and plain") {
  auto real = ReadDigitsCsv(kRealFile);
  REQUIRE(real.ok());
  TempDir dir;
  for (const std::string name : {"a.csv.gz", "a.csv"}) {
    REQUIRE(WriteDigitsCsv(dir.File(name), *real).ok());
    auto back = ReadDigitsCsv(dir.File(name));
    REQUIRE_MESSAGE(back.ok(), back.status().ToString());
    CHECK(back->labels == real->labels);
    CHECK(back->pixels == real->pixels);
  }
}

TEST_CASE("digits: the stratified split is 1497/300, 30 per class, disjoint and fixed") {
  auto real = ReadDigitsCsv(kRealFile);
  REQUIRE(real.ok());
  const TrainTestSplit a = StratifiedSplit(real->labels, kTestPerClass, kSplitSeed);
  const TrainTestSplit b = StratifiedSplit(real->labels, kTestPerClass, kSplitSeed);
  CHECK(a.train.size() == 1497);
  CHECK(a.test.size() == 300);
  CHECK(a.train == b.train);
  CHECK(a.test == b.test);
  CHECK(greenfed::LabelHistogram(real->labels, a.test, 10) == std::vector<int64_t>(10, 30));
  std::set<uint32_t> all(a.train.begin(), a.train.end());
  all.insert(a.test.begin(), a.test.end());
  CHECK(all.size() == 1797);
  CHECK(StratifiedSplit(real->labels, kTestPerClass, kSplitSeed + 1).test != a.test);
}

greenfed::StatusOr<greenfed::FitResult> Fit(DigitsTask& task, const greenfed::Parameters& params,
                                             const greenfed::TrainConfig& c, greenfed::ClientState* state = nullptr,
                                             greenfed::TensorGroups groups = {}, double proximal_mu = 0) {
  greenfed::FitRequest request;
  request.parameters = params;
  request.groups = std::move(groups);
  greenfed::PutTrainConfig(c, &request.config);
  if (proximal_mu > 0) request.config["proximal_mu"] = proximal_mu;
  greenfed::ClientState scratch;
  return task.Fit(request, state != nullptr ? *state : scratch);
}

TaskOptions Options(TaskRole role) {
  TaskOptions o;
  o.role = role;
  o.model = "mlp";
  o.init_seed = 1;
  return o;
}

TEST_CASE("digits: ShardSizes equals the client shards, for every scheme") {
  DigitsTask coordinator;
  REQUIRE(coordinator.Prepare(Options(TaskRole::kCoordinator)).ok());
  for (const std::string scheme : {"iid", "shards", "dirichlet"}) {
    PartitionSpec spec;
    spec.scheme = scheme;
    spec.num_clients = 10;
    spec.seed = 3;
    auto sizes = coordinator.ShardSizes(spec);
    REQUIRE_MESSAGE(sizes.ok(), sizes.status().ToString());
    REQUIRE(sizes->size() == 10);
    uint64_t total = 0;
    for (uint32_t c = 0; c < 10; ++c) {
      TaskOptions o = Options(TaskRole::kClient);
      o.partition = spec;
      o.client_index = c;
      DigitsTask client;
      REQUIRE(client.Prepare(o).ok());
      CHECK((*sizes)[c] == client.NumTrainExamples());
      total += client.NumTrainExamples();
      if (scheme == "iid") CHECK(client.NumTestExamples() == 30);
    }
    CHECK(total == 1497);
  }
}

TEST_CASE("digits: the analytic gradient matches finite differences") {
  auto real = ReadDigitsCsv(kRealFile);
  REQUIRE(real.ok());
  DigitsData batch = Select(*real, {0, 1, 2, 3, 4, 5, 6, 7});
  const std::vector<float> x = ScaledPixels(batch);
  for (const std::string name : {"softmax", "mlp"}) {
    auto model = DigitsModel::Create(name);
    REQUIRE(model.ok());
    model->Initialize(7);
    Weights grads = model->ZerosLike();
    model->LossAndGrad(x.data(), batch.labels.data(), batch.count(), &grads);
    for (size_t t = 0; t < grads.size(); ++t) {
      for (size_t k : {size_t{0}, grads[t].size() / 2, grads[t].size() - 1}) {
        const float saved = model->weights()[t][k];
        const float h = 3e-3f;
        Weights unused = model->ZerosLike();
        model->weights()[t][k] = saved + h;
        const double up = model->LossAndGrad(x.data(), batch.labels.data(), batch.count(), &unused);
        model->weights()[t][k] = saved - h;
        const double down = model->LossAndGrad(x.data(), batch.labels.data(), batch.count(), &unused);
        model->weights()[t][k] = saved;
        CHECK_MESSAGE(grads[t][k] == doctest::Approx((up - down) / (2 * h)).epsilon(0.02).scale(1e-3),
                      name << " tensor " << t << " element " << k);
      }
    }
  }
}

TEST_CASE("digits: unknown models and bad SGD settings are named errors") {
  DigitsTask task;
  TaskOptions o = Options(TaskRole::kCoordinator);
  o.model = "cnn";
  auto s = task.Prepare(o);
  CHECK(s.message() == "digits: unknown model 'cnn' (expected mlp or softmax)");
  DigitsTask central;
  REQUIRE(central.Prepare(Options(TaskRole::kCentralized)).ok());
  auto init = central.InitialParameters();
  REQUIRE(init.ok());
  greenfed::TrainConfig c;
  c.learning_rate = -1;
  CHECK(Fit(central, *init, c).status().message() == "digits Fit: learning_rate must be finite and > 0, got -1.000000");
  c.learning_rate = 0.1;
  c.momentum = 1;
  CHECK(Fit(central, *init, c).status().message() == "digits Fit: momentum must be in [0, 1), got 1.000000");
  c.momentum = 0.9;
  greenfed::Parameters wrong = *init;
  wrong.pop_back();
  CHECK_FALSE(Fit(central, wrong, c).ok());
}

TEST_CASE("digits: centralized training reaches > 0.9 test accuracy in 5 epochs, deterministically") {
  // Loose on purpose: measured 0.930 (mlp) and 0.927 (softmax) with these settings;
  // an untrained model is at ~0.1, and a broken gradient or update stays far below.
  for (const std::string model : {"mlp", "softmax"}) {
    DigitsTask task;
    TaskOptions o = Options(TaskRole::kCentralized);
    o.model = model;
    REQUIRE(task.Prepare(o).ok());
    CHECK(task.NumTrainExamples() == 1497);
    CHECK(task.NumTestExamples() == 300);
    auto params = task.InitialParameters();
    REQUIRE(params.ok());
    auto before = task.Evaluate(*params);
    REQUIRE(before.ok());
    CHECK(before->accuracy < 0.3);
    greenfed::TrainConfig c;
    c.epochs = 5;
    c.batch_size = 32;
    c.learning_rate = 0.05;
    c.momentum = 0.9;
    c.seed = 11;
    auto fit = Fit(task, *params, c);
    REQUIRE_MESSAGE(fit.ok(), fit.status().ToString());
    CHECK(fit->num_examples == 1497);
    auto after = task.Evaluate(fit->parameters);
    REQUIRE(after.ok());
    MESSAGE(model << ": accuracy " << after->accuracy << ", train loss " << fit->train_loss);
    CHECK(after->accuracy > 0.9);
    CHECK(fit->train_loss < before->loss);
    auto again = Fit(task, *params, c);
    REQUIRE(again.ok());
    CHECK(again->parameters[0].data == fit->parameters[0].data);
  }
}

TEST_CASE("digits: own data is the whole training set, the partition is ignored") {
  auto real = ReadDigitsCsv(kRealFile);
  REQUIRE(real.ok());
  TempDir dir;
  const std::string mine = dir.File("mine.csv");
  REQUIRE(WriteDigitsCsv(mine, Select(*real, {5, 6, 7, 8, 9})).ok());
  TaskOptions o = Options(TaskRole::kClient);
  o.own_data_path = mine;
  o.partition.num_clients = 3;
  o.client_index = 2;
  DigitsTask task;
  REQUIRE(task.Prepare(o).ok());
  CHECK(task.NumTrainExamples() == 5);
  CHECK(task.TrainLabelHistogram() == std::vector<int64_t>{0, 0, 0, 0, 0, 1, 1, 1, 1, 1});
  auto params = task.InitialParameters();
  REQUIRE(params.ok());
  CHECK(Fit(task, *params, greenfed::TrainConfig{}).ok());
  CHECK(task.Evaluate(*params).status().code() == Code::kFailedPrecondition);
  CHECK(task.ShardSizes(o.partition).status().code() == Code::kFailedPrecondition);
  WriteText(mine, Row(1, 2) + "\n" + Row(1, 12) + "\n");
  DigitsTask bad;
  CHECK(bad.Prepare(o).message() == mine + ":2: field 65: label 12 is out of range (expected 0..9)");
  o.role = TaskRole::kCoordinator;
  CHECK(bad.Prepare(o).message() == "digits: own data (--data) is for the client role, not coordinator");
}

}  // namespace

namespace {

double Distance(const greenfed::Parameters& a, const greenfed::Parameters& b) {
  double d = 0;
  for (size_t t = 0; t < a.size(); ++t) {
    const auto x = greenfed::FloatValues(a[t]);
    const auto y = greenfed::FloatValues(b[t]);
    for (size_t k = 0; k < x.size(); ++k) d += (x[k] - y[k]) * (x[k] - y[k]);
  }
  return std::sqrt(d);
}

greenfed::TrainConfig Sgd(uint32_t epochs) {
  greenfed::TrainConfig c;
  c.epochs = epochs;
  c.learning_rate = 0.05;
  c.seed = 5;
  return c;
}

}  // namespace

TEST_CASE("digits: FedProx's proximal_mu holds the local weights near the global ones") {
  DigitsTask task;
  REQUIRE(task.Prepare(Options(TaskRole::kCentralized)).ok());
  auto init = task.InitialParameters();
  REQUIRE(init.ok());
  auto plain = Fit(task, *init, Sgd(2));
  auto prox = Fit(task, *init, Sgd(2), nullptr, {}, 10.0);
  REQUIRE(plain.ok());
  REQUIRE(prox.ok());
  MESSAGE("distance from the start: mu 0 " << Distance(*init, plain->parameters) << ", mu 10 "
                                           << Distance(*init, prox->parameters));
  CHECK(Distance(*init, prox->parameters) < 0.5 * Distance(*init, plain->parameters));
  CHECK(task.Capabilities() == std::vector<std::string>{"fedprox", "scaffold"});
}

TEST_CASE("digits: SCAFFOLD returns delta c_i, keeps c_i in the client state and corrects with c - c_i") {
  DigitsTask task;
  TaskOptions o = Options(TaskRole::kClient);
  o.partition.num_clients = 4;
  o.client_index = 1;
  REQUIRE(task.Prepare(o).ok());
  auto init = task.InitialParameters();
  REQUIRE(init.ok());
  greenfed::Parameters zeros;
  for (const auto& b : *init) {
    zeros.push_back(greenfed::MakeFloatBlob(b.name, b.shape, std::vector<float>(static_cast<size_t>(b.NumElements()), 0.0f)));
  }
  greenfed::ClientState state;
  greenfed::TrainConfig c = Sgd(1);
  c.momentum = 0;  // option II's c_i+ = (x - y) / (K lr) is then exact to check
  auto first = Fit(task, *init, c, &state, {{"control", zeros}});
  REQUIRE_MESSAGE(first.ok(), first.status().ToString());
  REQUIRE(first->groups.count("control") == 1);
  REQUIRE(state.count("control") == 1);
  // c = 0, c_i = 0: c_i+ = delta = (x - y) / (K lr) with K = ceil(n / 32) steps.
  const double k_steps = std::ceil(static_cast<double>(task.NumTrainExamples()) / 32.0);
  const float x0 = greenfed::FloatValues((*init)[0])[3];
  const float y0 = greenfed::FloatValues(first->parameters[0])[3];
  CHECK(greenfed::FloatValues(first->groups["control"][0])[3] ==
        doctest::Approx((x0 - y0) / (k_steps * 0.05)).epsilon(1e-4));
  CHECK(greenfed::FloatValues(state["control"][0]) == greenfed::FloatValues(first->groups["control"][0]));
  // Round 2 from the same weights: the kept c_i changes the gradient, so the result differs.
  auto again_fresh = Fit(task, *init, c, nullptr, {{"control", zeros}});
  auto second = Fit(task, *init, c, &state, {{"control", zeros}});
  REQUIRE(second.ok());
  REQUIRE(again_fresh.ok());
  CHECK(again_fresh->parameters[0].data == first->parameters[0].data);
  CHECK(second->parameters[0].data != first->parameters[0].data);
  // No "control" group: plain SGD, nothing kept.
  greenfed::ClientState untouched;
  REQUIRE(Fit(task, *init, c, &untouched).ok());
  CHECK(untouched.empty());
  // A control variate of the wrong shape is refused, naming the group.
  greenfed::Parameters wrong = zeros;
  wrong.pop_back();
  auto bad = Fit(task, *init, c, &state, {{"control", wrong}});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.status().message().find("digits Fit: group control") != std::string::npos);
}

TEST_CASE("digits: persist_momentum keeps the momentum buffers across Fits in the client state") {
  TaskOptions o = Options(TaskRole::kCentralized);
  o.persist_momentum = true;
  DigitsTask task;
  REQUIRE(task.Prepare(o).ok());
  auto init = task.InitialParameters();
  REQUIRE(init.ok());
  greenfed::ClientState state;
  auto first = Fit(task, *init, Sgd(1), &state);
  REQUIRE(first.ok());
  REQUIRE(state.count("momentum") == 1);
  auto carried = Fit(task, *init, Sgd(1), &state);
  greenfed::ClientState empty;
  auto fresh = Fit(task, *init, Sgd(1), &empty);
  REQUIRE(carried.ok());
  REQUIRE(fresh.ok());
  CHECK(fresh->parameters[0].data == first->parameters[0].data);
  CHECK(carried->parameters[0].data != first->parameters[0].data);
  DigitsTask plain;
  REQUIRE(plain.Prepare(Options(TaskRole::kCentralized)).ok());
  greenfed::ClientState none;
  REQUIRE(Fit(plain, *init, Sgd(1), &none).ok());
  CHECK(none.empty());
}
