#include "fashion_mnist/model.h"

#include <cstring>
#include <utility>

#include "fashion_mnist/model_torch.h"

namespace greenfed::fmnist {
namespace {

// ReLU and 2x2 max-pooling commute (max is monotone and ReLU is monotone), so the
// models pool first and apply ReLU to a quarter of the values. Outputs and
// gradients equal conv -> ReLU -> pool.
struct CnnImpl : torch::nn::Module {
  CnnImpl()
      : conv1(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 16, 3).padding(1)))),
        conv2(register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 32, 3).padding(1)))),
        fc1(register_module("fc1", torch::nn::Linear(32 * 7 * 7, 64))),
        fc2(register_module("fc2", torch::nn::Linear(64, 10))) {}

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor h = torch::relu(torch::max_pool2d(conv1->forward(x), 2));
    h = torch::relu(torch::max_pool2d(conv2->forward(h), 2));
    h = torch::relu(fc1->forward(h.flatten(1)));
    return fc2->forward(h);
  }

  torch::nn::Conv2d conv1;
  torch::nn::Conv2d conv2;
  torch::nn::Linear fc1;
  torch::nn::Linear fc2;
};

struct MlpImpl : torch::nn::Module {
  MlpImpl()
      : fc1(register_module("fc1", torch::nn::Linear(28 * 28, 128))),
        fc2(register_module("fc2", torch::nn::Linear(128, 10))) {}

  torch::Tensor forward(const torch::Tensor& x) { return fc2->forward(torch::relu(fc1->forward(x.flatten(1)))); }

  torch::nn::Linear fc1;
  torch::nn::Linear fc2;
};

template <typename M>
StatusOr<std::unique_ptr<Net>> MakeNetOf() {
  auto module = std::make_shared<M>();
  return MakeNet(module, [module](const torch::Tensor& x) { return module->forward(x); });
}

}  // namespace

Net::Net(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Net::~Net() = default;
Net::Net(Net&&) noexcept = default;
Net& Net::operator=(Net&&) noexcept = default;

const std::vector<TensorSpec>& Net::Specs() const { return impl_->specs; }

int64_t Net::NumParameters() const {
  int64_t n = 0;
  for (const TensorSpec& s : impl_->specs) n += greenfed::NumElements(s.shape);
  return n;
}

StatusOr<Parameters> Net::GetParameters() const {
  Parameters out;
  out.reserve(impl_->params.size());
  for (size_t i = 0; i < impl_->params.size(); ++i) {
    const torch::Tensor& t = impl_->params[i];
    TensorBlob blob;
    blob.name = impl_->specs[i].name;
    blob.dtype = DType::kFloat32;
    blob.shape = impl_->specs[i].shape;
    blob.data.resize(static_cast<size_t>(t.numel()) * sizeof(float));
    // MakeNet checked contiguous float32 CPU, so the bytes are the blob layout.
    if (!blob.data.empty()) std::memcpy(blob.data.data(), t.data_ptr<float>(), blob.data.size());
    out.push_back(std::move(blob));
  }
  return out;
}

Status Net::SetParameters(const Parameters& params) {
  GREENFED_RETURN_IF_ERROR(ValidateAgainst(params, impl_->specs));
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params.size(); ++i) {
    const std::vector<uint8_t>& bytes = params[i].data;
    if (!bytes.empty()) std::memcpy(impl_->params[i].data_ptr<float>(), bytes.data(), bytes.size());
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<Net>> MakeNet(std::shared_ptr<torch::nn::Module> module,
                                       std::function<torch::Tensor(const torch::Tensor&)> forward) {
  if (module == nullptr || !forward) return InvalidArgument("MakeNet needs a module and its forward function");
  auto impl = std::make_unique<Net::Impl>();
  for (const auto& item : module->named_parameters(/*recurse=*/true)) {
    const torch::Tensor& t = item.value();
    if (t.scalar_type() != torch::kFloat32 || !t.is_contiguous() || !t.device().is_cpu()) {
      return InvalidArgument("parameter '" + item.key() + "' must be a contiguous float32 CPU tensor");
    }
    impl->specs.push_back(TensorSpec{item.key(), DType::kFloat32, t.sizes().vec()});
    impl->params.push_back(t);
  }
  impl->module = std::move(module);
  impl->forward = std::move(forward);
  return std::make_unique<Net>(std::move(impl));
}

Status ModelRegistry::Register(const std::string& name, NetFactory factory) {
  if (name.empty()) return InvalidArgument("model name must not be empty");
  if (!factory) return InvalidArgument("model '" + name + "' registered without a factory");
  if (!factories_.emplace(name, std::move(factory)).second) {
    return InvalidArgument("model '" + name + "' is already registered");
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<Net>> ModelRegistry::Create(const std::string& name, uint64_t init_seed) const {
  auto it = factories_.find(name);
  if (it == factories_.end()) {
    std::string known;
    for (const auto& entry : factories_) known += (known.empty() ? "" : ", ") + entry.first;
    return NotFound("unknown model '" + name + "' (registered: " + known + ")");
  }
  try {
    torch::manual_seed(init_seed);
    StatusOr<std::unique_ptr<Net>> net = it->second();
    if (net.ok() && *net == nullptr) return Internal("factory of model '" + name + "' returned null");
    return net;
  } catch (const c10::Error& e) {
    return Internal("building model '" + name + "': " + e.what_without_backtrace());
  } catch (const std::exception& e) {
    return Internal("building model '" + name + "': " + e.what());
  }
}

std::vector<std::string> ModelRegistry::Names() const {
  std::vector<std::string> names;
  for (const auto& entry : factories_) names.push_back(entry.first);
  return names;
}

Status RegisterBuiltinModels(ModelRegistry* registry) {
  if (registry == nullptr) return InvalidArgument("RegisterBuiltinModels needs a registry");
  GREENFED_RETURN_IF_ERROR(registry->Register("cnn", MakeNetOf<CnnImpl>));
  return registry->Register("mlp", MakeNetOf<MlpImpl>);
}

}  // namespace greenfed::fmnist
