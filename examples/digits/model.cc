#include "digits/model.h"

#include <algorithm>
#include <cmath>

#include "digits/data.h"
#include "greenfed/partition.h"

namespace greenfed::digits {

namespace {

// Softmax of `logits` in place (max subtracted first); returns log-sum-exp.
double SoftmaxInPlace(float* logits, size_t k) {
  const float max = *std::max_element(logits, logits + k);
  double sum = 0;
  for (size_t c = 0; c < k; ++c) {
    logits[c] = std::exp(logits[c] - max);
    sum += logits[c];
  }
  for (size_t c = 0; c < k; ++c) logits[c] = static_cast<float>(logits[c] / sum);
  return static_cast<double>(max) + std::log(sum);
}

}  // namespace

DigitsModel::DigitsModel(std::string name, uint32_t hidden) : name_(std::move(name)), hidden_(hidden) {
  for (const TensorSpec& s : Specs()) weights_.emplace_back(static_cast<size_t>(NumElements(s.shape)), 0.0f);
}

StatusOr<DigitsModel> DigitsModel::Create(const std::string& name) {
  if (name == "softmax") return DigitsModel(name, 0);
  if (name == "mlp") return DigitsModel(name, kMlpHidden);
  return InvalidArgument("digits: unknown model '" + name + "' (expected mlp or softmax)");
}

std::vector<std::string> DigitsModel::Names() { return {"mlp", "softmax"}; }

std::vector<TensorSpec> DigitsModel::Specs() const {
  const int64_t f = kNumFeatures;
  const int64_t k = kNumClasses;
  if (hidden_ == 0) {
    return {{"fc.weight", DType::kFloat32, {k, f}}, {"fc.bias", DType::kFloat32, {k}}};
  }
  const int64_t h = hidden_;
  return {{"fc1.weight", DType::kFloat32, {h, f}},
          {"fc1.bias", DType::kFloat32, {h}},
          {"fc2.weight", DType::kFloat32, {k, h}},
          {"fc2.bias", DType::kFloat32, {k}}};
}

void DigitsModel::Initialize(uint64_t seed) {
  DeterministicRng rng(seed);
  const std::vector<TensorSpec> specs = Specs();
  for (size_t t = 0; t < specs.size(); ++t) {
    // A weight [out, in] and the bias after it share the bound 1/sqrt(in).
    const int64_t fan_in = specs[t].shape.size() == 2 ? specs[t].shape[1] : specs[t - 1].shape[1];
    const double bound = 1.0 / std::sqrt(static_cast<double>(fan_in));
    for (float& w : weights_[t]) w = static_cast<float>((2.0 * rng.Uniform01() - 1.0) * bound);
  }
}

Status DigitsModel::SetParameters(const Parameters& params) {
  GREENFED_RETURN_IF_ERROR(ValidateAgainst(params, Specs()).WithContext("digits " + name_));
  for (size_t t = 0; t < params.size(); ++t) weights_[t] = FloatValues(params[t]);
  return Status::Ok();
}

Parameters DigitsModel::GetParameters() const {
  Parameters out;
  const std::vector<TensorSpec> specs = Specs();
  for (size_t t = 0; t < specs.size(); ++t) out.push_back(MakeFloatBlob(specs[t].name, specs[t].shape, weights_[t]));
  return out;
}

Weights DigitsModel::ZerosLike() const {
  Weights z;
  for (const auto& w : weights_) z.emplace_back(w.size(), 0.0f);
  return z;
}

void DigitsModel::Forward(const float* x, float* hidden_out, float* logits) const {
  const size_t f = kNumFeatures;
  const size_t k = kNumClasses;
  const float* in = x;
  size_t in_dim = f;
  size_t last = 0;  // index of the output layer's weight tensor
  if (hidden_ > 0) {
    const float* w1 = weights_[0].data();
    const float* b1 = weights_[1].data();
    for (size_t j = 0; j < hidden_; ++j) {
      float a = b1[j];
      for (size_t i = 0; i < f; ++i) a += w1[j * f + i] * x[i];
      hidden_out[j] = a > 0 ? a : 0;
    }
    in = hidden_out;
    in_dim = hidden_;
    last = 2;
  }
  const float* w = weights_[last].data();
  const float* b = weights_[last + 1].data();
  for (size_t c = 0; c < k; ++c) {
    float a = b[c];
    for (size_t i = 0; i < in_dim; ++i) a += w[c * in_dim + i] * in[i];
    logits[c] = a;
  }
}

double DigitsModel::LossAndGrad(const float* x, const uint8_t* y, size_t n, Weights* grads) const {
  const size_t f = kNumFeatures;
  const size_t k = kNumClasses;
  std::vector<float> hidden(hidden_);
  std::vector<float> dhidden(hidden_);
  float p[kNumClasses];
  double loss = 0;
  const float inv_n = 1.0f / static_cast<float>(n);
  for (size_t s = 0; s < n; ++s) {
    const float* xs = x + s * f;
    Forward(xs, hidden.data(), p);
    const double target_logit = p[y[s]];
    loss += SoftmaxInPlace(p, k) - target_logit;  // -log softmax(z)_y = logsumexp(z) - z_y
    p[y[s]] -= 1.0f;  // d(loss)/d(logits) = softmax - onehot
    for (size_t c = 0; c < k; ++c) p[c] *= inv_n;
    const float* in = hidden_ > 0 ? hidden.data() : xs;
    const size_t in_dim = hidden_ > 0 ? hidden_ : f;
    const size_t last = hidden_ > 0 ? 2 : 0;
    float* gw = (*grads)[last].data();
    float* gb = (*grads)[last + 1].data();
    for (size_t c = 0; c < k; ++c) {
      gb[c] += p[c];
      for (size_t i = 0; i < in_dim; ++i) gw[c * in_dim + i] += p[c] * in[i];
    }
    if (hidden_ == 0) continue;
    const float* w2 = weights_[2].data();
    for (size_t j = 0; j < hidden_; ++j) {
      float d = 0;
      if (hidden[j] > 0) {
        for (size_t c = 0; c < k; ++c) d += w2[c * hidden_ + j] * p[c];
      }
      dhidden[j] = d;
    }
    float* gw1 = (*grads)[0].data();
    float* gb1 = (*grads)[1].data();
    for (size_t j = 0; j < hidden_; ++j) {
      if (dhidden[j] == 0) continue;
      gb1[j] += dhidden[j];
      for (size_t i = 0; i < f; ++i) gw1[j * f + i] += dhidden[j] * xs[i];
    }
  }
  return loss / static_cast<double>(n);
}

void DigitsModel::Evaluate(const float* x, const uint8_t* y, size_t n, double* loss_sum, uint64_t* correct) const {
  std::vector<float> hidden(hidden_);
  float p[kNumClasses];
  for (size_t s = 0; s < n; ++s) {
    Forward(x + s * kNumFeatures, hidden.data(), p);
    const size_t best = static_cast<size_t>(std::max_element(p, p + kNumClasses) - p);
    if (best == y[s]) ++*correct;
    const double target_logit = p[y[s]];
    *loss_sum += SoftmaxInPlace(p, kNumClasses) - target_logit;
  }
}

}  // namespace greenfed::digits
