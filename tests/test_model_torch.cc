// libtorch-side pieces of the Fashion-MNIST models (model_torch.h), compared against
// libtorch's own ops. This is the one test file that includes torch/torch.h.
#include <doctest/doctest.h>

#include <limits>
#include <vector>

#include "fashion_mnist/model_torch.h"

TEST_CASE("task: PoolRelu2x2 is torch::relu(torch::max_pool2d(x, 2)) forward and backward, bit for bit") {
  using greenfed::fmnist::PoolRelu2x2;
  torch::manual_seed(11);
  std::vector<torch::Tensor> inputs = {torch::randn({32, 16, 28, 28}), torch::randn({5, 3, 14, 14}),
                                       torch::full({2, 2, 4, 4}, 0.5), torch::zeros({1, 1, 2, 2}),
                                       torch::full({1, 2, 6, 6}, -1.0)};
  torch::Tensor with_nan = torch::randn({2, 2, 6, 6});
  with_nan.index_put_({0, 1, 2, 3}, std::numeric_limits<float>::quiet_NaN());
  inputs.push_back(with_nan);
  inputs.push_back(torch::randn({2, 3, 5, 6}));  // odd height: the libtorch path
  for (const torch::Tensor& x : inputs) {
    INFO("input shape " << x.sizes());
    torch::Tensor xa = x.clone().requires_grad_(true);
    torch::Tensor xb = x.clone().requires_grad_(true);
    torch::Tensor ya = torch::relu(torch::max_pool2d(xa, 2));
    torch::Tensor yb = PoolRelu2x2(xb);
    REQUIRE(ya.sizes() == yb.sizes());
    CHECK(torch::equal(torch::isnan(ya), torch::isnan(yb)));
    CHECK(torch::equal(torch::nan_to_num(ya), torch::nan_to_num(yb)));
    torch::Tensor g = torch::randn_like(ya);
    ya.backward(g);
    yb.backward(g);
    CHECK(torch::equal(xa.grad(), xb.grad()));
    torch::NoGradGuard no_grad;  // the inference path keeps no positions
    CHECK(torch::equal(torch::nan_to_num(PoolRelu2x2(x)), torch::nan_to_num(torch::relu(torch::max_pool2d(x, 2)))));
  }
}
