#include "fashion_mnist/model.h"

#include <cstring>
#include <utility>

#include "fashion_mnist/model_torch.h"
#include "fashion_mnist/pool_kernels.h"

namespace greenfed::fmnist {
namespace {

// relu(max_pool2d(x, 2)) of a 4-d float32 CPU x with even H and W; `where` (uint8, the output's
// shape) receives the window positions for backward, or is null (inference).
torch::Tensor PoolForward(const torch::Tensor& x_in, torch::Tensor* where) {
  const torch::Tensor x = x_in.contiguous();
  const int64_t n = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
  torch::Tensor out = torch::empty({n, c, h / 2, w / 2}, x.options());
  PoolRelu2x2Forward(x.data_ptr<float>(), out.data_ptr<float>(), where != nullptr ? where->data_ptr<uint8_t>() : nullptr,
                     n * c * (h / 2), w);
  return out;
}

// relu(max_pool2d(x, 2)) through pool_kernels.h, as an autograd function: the window
// positions are the only thing saved for backward (one byte per output).
struct PoolRelu2x2Fn : torch::autograd::Function<PoolRelu2x2Fn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x) {
    torch::Tensor where = torch::empty({x.size(0), x.size(1), x.size(2) / 2, x.size(3) / 2},
                                       x.options().dtype(torch::kUInt8));
    torch::Tensor out = PoolForward(x, &where);
    ctx->save_for_backward({where});
    ctx->saved_data["h"] = x.size(2);
    ctx->saved_data["w"] = x.size(3);
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const torch::Tensor where = ctx->get_saved_variables()[0];
    const torch::Tensor g = grads[0].contiguous();
    const int64_t h = ctx->saved_data["h"].toInt(), w = ctx->saved_data["w"].toInt();
    torch::Tensor dx = torch::empty({g.size(0), g.size(1), h, w}, g.options());
    PoolRelu2x2Backward(g.data_ptr<float>(), where.data_ptr<uint8_t>(), dx.data_ptr<float>(),
                        g.size(0) * g.size(1) * (h / 2), w);
    return {dx};
  }
};

}  // namespace

torch::Tensor PoolRelu2x2(const torch::Tensor& x) {
  const bool supported = x.dim() == 4 && x.scalar_type() == torch::kFloat32 && x.device().is_cpu() &&
                         x.size(2) % 2 == 0 && x.size(3) % 2 == 0 && x.numel() > 0;
  if (!supported) return torch::relu(torch::max_pool2d(x, 2));
  if (torch::GradMode::is_enabled() && x.requires_grad()) return PoolRelu2x2Fn::apply(x);
  return PoolForward(x, nullptr);
}

namespace {

// ReLU and 2x2 max-pooling commute (max is monotone and ReLU is monotone), so the
// models pool first and apply ReLU to a quarter of the values, fused in PoolRelu2x2.
// Outputs and gradients equal conv -> ReLU -> pool.
struct CnnImpl : torch::nn::Module {
  CnnImpl()
      : conv1(register_module("conv1", torch::nn::Conv2d(torch::nn::Conv2dOptions(1, 16, 3).padding(1)))),
        conv2(register_module("conv2", torch::nn::Conv2d(torch::nn::Conv2dOptions(16, 32, 3).padding(1)))),
        fc1(register_module("fc1", torch::nn::Linear(32 * 7 * 7, 64))),
        fc2(register_module("fc2", torch::nn::Linear(64, 10))) {}

  torch::Tensor forward(const torch::Tensor& x) {
    torch::Tensor h = PoolRelu2x2(conv1->forward(x));
    h = PoolRelu2x2(conv2->forward(h));
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
