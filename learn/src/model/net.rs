//! The burn module behind every [`Arch`]: optional convolutions, then dense layers.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::module::{conv2d, linear, max_pool2d};
use burn::tensor::ops::{ConvOptions, MaxPoolOptions};
use burn::tensor::{Device, Tensor, TensorData};

use super::{Arch, CNN_KERNEL, ModelError};

/// A 2-D convolution's parameters.
#[derive(Module, Debug)]
pub struct Conv {
    /// `[out_channels, in_channels, k, k]`
    weight: Param<Tensor<4>>,
    /// `[out_channels]`
    bias: Param<Tensor<1>>,
}

/// A dense layer's parameters, `y = x W + b`.
#[derive(Module, Debug)]
pub struct Dense {
    /// `[d_in, d_out]`
    weight: Param<Tensor<2>>,
    /// `[d_out]`
    bias: Param<Tensor<1>>,
}

/// A model instance on a burn device. Field order is the flat parameter order.
#[derive(Module, Debug)]
pub struct Net {
    conv: Vec<Conv>,
    dense: Vec<Dense>,
    /// Input shape `[channels, height, width]`, used to unflatten a batch for the convolutions.
    #[module(skip)]
    image: [usize; 3],
}

fn param<const D: usize>(values: &[f32], shape: &[usize], device: &Device) -> Param<Tensor<D>> {
    let dims: [usize; D] = shape.try_into().expect("layout rank matches the module");
    Param::from_data(TensorData::new(values.to_vec(), dims), device)
}

impl Net {
    /// Builds the model on `device` with the given flat parameters (see [`super`] for the order).
    /// On an autodiff device every parameter requires a gradient.
    pub fn from_flat(arch: &Arch, params: &[f32], device: &Device) -> Result<Self, ModelError> {
        arch.check_len(params)?;
        let layout = arch.layout();
        let mut slots = layout.iter();
        let mut next = || slots.next().expect("layout has a slot per tensor");
        let mut conv = Vec::with_capacity(arch.convs.len());
        for _ in &arch.convs {
            let (w, b) = (next(), next());
            conv.push(Conv {
                weight: param(&params[w.range()], &w.shape, device),
                bias: param(&params[b.range()], &b.shape, device),
            });
        }
        let mut dense = Vec::with_capacity(arch.dense.len());
        for _ in &arch.dense {
            let (w, b) = (next(), next());
            dense.push(Dense {
                weight: param(&params[w.range()], &w.shape, device),
                bias: param(&params[b.range()], &b.shape, device),
            });
        }
        let input = arch.input;
        Ok(Self {
            conv,
            dense,
            image: [input.channels, input.height, input.width],
        })
    }

    /// Logits `[batch, classes]` for a batch of flattened samples `[batch, input_len]`.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let [batch, _] = x.dims();
        let mut h = x;
        if !self.conv.is_empty() {
            let [c, height, width] = self.image;
            let mut img: Tensor<4> = h.reshape([batch, c, height, width]);
            let pad = CNN_KERNEL / 2;
            for conv in &self.conv {
                let opts = ConvOptions::new([1, 1], [pad, pad], [1, 1], 1);
                // [batch, out, h, w] -> [batch, out, h/2, w/2]
                img = conv2d(img, conv.weight.val(), Some(conv.bias.val()), opts);
                img = max_pool2d(relu(img), MaxPoolOptions::new([2, 2]));
            }
            let [b, c, hh, ww] = img.dims();
            h = img.reshape([b, c * hh * ww]);
        }
        let last = self.dense.len() - 1;
        for (i, d) in self.dense.iter().enumerate() {
            h = linear(h, d.weight.val(), Some(d.bias.val()));
            if i < last {
                h = relu(h);
            }
        }
        h
    }

    /// Mean cross-entropy of `logits` `[batch, classes]` against one-hot targets of the same
    /// shape; a one-element tensor.
    pub fn cross_entropy(logits: Tensor<2>, one_hot: Tensor<2>) -> Tensor<1> {
        let [batch, _] = logits.dims();
        (log_softmax(logits, 1) * one_hot)
            .sum()
            .div_scalar(-(batch as f32))
    }

    /// Reads every parameter into `out` (cleared first), in flat order.
    pub fn flatten_into(&self, out: &mut Vec<f32>) {
        out.clear();
        self.visit(&mut Flatten { out });
    }

    /// Every parameter, in flat order.
    pub fn flatten(&self) -> Vec<f32> {
        let mut out = Vec::new();
        self.flatten_into(&mut out);
        out
    }

    /// Replaces every parameter's value with the matching slice of `params`, keeping each
    /// tensor's device and gradient requirement (so an optimiser keeps updating it).
    pub fn write_back(self, params: &[f32]) -> Self {
        let mut writer = WriteBack { params, offset: 0 };
        let net = self.map(&mut writer);
        assert_eq!(writer.offset, params.len(), "parameter vector length");
        net
    }

    /// Calls `f(offset, values, grad)` for every parameter tensor in flat order with the gradient
    /// taken out of `grads`; `values` is the tensor's slice of `params`, which starts at `offset`.
    /// Parameters without a gradient are passed zeros. Taken out, a gradient is the only owner
    /// of its buffer, which is then read where it lies; a gradient left shared would be copied
    /// twice on the way out (once to a vector, then again to an aligned buffer): two 400 KB
    /// copies a step for the MNIST MLP.
    pub fn for_each_grad(
        &self,
        grads: &mut burn::tensor::Gradients,
        params: &mut [f32],
        mut f: impl FnMut(usize, &mut [f32], &[f32]),
    ) {
        self.for_each_grad_at(grads, |offset, g| {
            f(offset, &mut params[offset..offset + g.len()], g)
        });
    }

    /// Calls `f(offset, grad)` for each parameter tensor in flat order (`offset` where it starts
    /// in the flat parameters; a zero gradient for a tensor without one), removing each
    /// gradient from `grads`.
    pub fn for_each_grad_at(
        &self,
        grads: &mut burn::tensor::Gradients,
        mut f: impl FnMut(usize, &[f32]),
    ) {
        let mut visitor = GradVisitor {
            grads,
            offset: 0,
            f: &mut f,
        };
        self.visit(&mut visitor);
    }
}

/// The values of an `f32` tensor; models are built from `f32` data only.
pub(crate) fn f32s(data: &TensorData) -> &[f32] {
    data.as_slice::<f32>()
        .expect("model tensors are f32 (the default float type of every backend used)")
}

struct Flatten<'a> {
    out: &'a mut Vec<f32>,
}

impl ModuleVisitor for Flatten<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let data = param.val().into_data();
        self.out.extend_from_slice(f32s(&data));
    }
}

struct WriteBack<'a> {
    params: &'a [f32],
    offset: usize,
}

impl ModuleMapper for WriteBack<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let start = self.offset;
        let params = self.params;
        let mut len = 0;
        let param = param.map(|tensor| {
            let dims = tensor.dims();
            len = dims.iter().product::<usize>();
            let device = tensor.device();
            let require_grad = tensor.is_require_grad();
            let fresh = Tensor::from_data(
                TensorData::new(params[start..start + len].to_vec(), dims),
                &device,
            );
            if require_grad {
                fresh.require_grad()
            } else {
                fresh
            }
        });
        self.offset += len;
        param
    }
}

struct GradVisitor<'a, F> {
    grads: &'a mut burn::tensor::Gradients,
    offset: usize,
    f: &'a mut F,
}

impl<F: FnMut(usize, &[f32])> ModuleVisitor for GradVisitor<'_, F> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let tensor = param.val();
        let len = tensor.shape().num_elements();
        match tensor.grad_remove(self.grads) {
            Some(grad) => {
                let data = grad.into_data();
                (self.f)(self.offset, f32s(&data));
            }
            None => (self.f)(self.offset, &vec![0.0; len]),
        }
        self.offset += len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::InputShape;
    use crate::model::Spec;

    /// Counts the parameters whose gradient is still in `grads`, and keeps their values.
    struct Left<'a> {
        grads: &'a burn::tensor::Gradients,
        values: Vec<f32>,
        count: usize,
    }

    impl ModuleVisitor for Left<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = param.val().grad(self.grads) {
                self.count += 1;
                self.values.extend_from_slice(f32s(&g.into_data()));
            }
        }
    }

    #[test]
    fn gradients_are_taken_out_with_the_values_burn_holds() {
        let device = crate::train::Backend::Flex.device().unwrap().autodiff();
        let shape = InputShape {
            channels: 1,
            height: 8,
            width: 8,
        };
        for spec in [
            Spec::Mlp { hidden: vec![16] },
            Spec::Cnn {
                channels: [2, 4],
                hidden: 8,
            },
        ] {
            let arch = Arch::new(&spec, shape, 10).unwrap();
            let init = arch.init(3);
            let net = Net::from_flat(&arch, &init, &device).unwrap();
            let x = Tensor::<2>::ones([4, shape.len()], &device);
            let mut grads = net.forward(x).sum().backward();
            let mut held = Left {
                grads: &grads,
                values: Vec::new(),
                count: 0,
            };
            net.visit(&mut held);
            let held = held.values;
            assert_eq!(
                held.len(),
                arch.num_params(),
                "{spec:?}: every parameter has one"
            );

            let mut params = init.clone();
            let mut seen = Vec::new();
            net.for_each_grad(&mut grads, &mut params, |offset, p, g| {
                assert_eq!((offset, p.len()), (seen.len(), g.len()));
                seen.extend_from_slice(g);
            });
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&seen), bits(&held), "{spec:?}: the same values");
            let mut left = Left {
                grads: &grads,
                values: Vec::new(),
                count: 0,
            };
            net.visit(&mut left);
            assert_eq!(left.count, 0, "{spec:?}: every gradient was taken out");
        }
    }
}
