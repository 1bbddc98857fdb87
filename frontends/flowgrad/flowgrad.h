/* flowgrad's public C API in one header:
 *
 *     #include <flowgrad/flowgrad.h>
 *     cc my_program.c $(pkg-config --cflags --libs flowgrad)
 *
 * It includes every installed header, layer by layer (README.md, "Layout").  The headers
 * include one another by folder ("core/ir/graph.h"), which pkg-config's -I makes resolve. */
#ifndef FLOWGRAD_H
#define FLOWGRAD_H

/* core/: the base types, the IR, the compiler, the runtime, file formats */
#include "core/status.h"
#include "core/shape.h"
#include "core/buffer.h"
#include "core/tensor.h"
#include "core/rng.h"
#include "core/vec.h"
#include "core/size.h"
#include "core/ir/graph.h"
#include "core/ir/op.h"
#include "core/ir/op_attrs.h"
#include "core/ir/dot.h"
#include "core/compiler/pass.h"
#include "core/runtime/program.h"
#include "core/runtime/threadpool.h"
#include "core/formats/safetensors.h"
#include "core/formats/npy.h"
#include "core/formats/idx.h"
#include "core/formats/cifar.h"
#include "core/formats/png_grid.h"
#include "core/formats/raster.h"
#include "core/formats/plot.h"

/* ops/: op builders, the kernel libraries in use, autodiff and gradient checks */
#include "ops/ops.h"
#include "ops/kernel_info.h"
#include "ops/autodiff/autodiff.h"
#include "ops/autodiff/gradcheck.h"
#include "ops/autodiff/jacobian.h"

/* flows/: bijectors, flows, layers, models and training */
#include "flows/bijector.h"
#include "flows/params.h"
#include "flows/registry.h"
#include "flows/distribution.h"
#include "flows/check.h"
#include "flows/flow.h"
#include "flows/class_means.h"
#include "flows/models.h"
#include "flows/layers/layers.h"
#include "flows/layers/conditioner.h"
#include "flows/layers/coupling.h"
#include "flows/train/optim.h"
#include "flows/train/trainer.h"
#include "flows/train/checkpoint.h"
#include "flows/train/recompute.h"
#include "flows/train/dist.h"

/* frontends/: the flow-spec language and data sources */
#include "frontends/spec/spec.h"
#include "frontends/data/data_source.h"
#include "frontends/data/fashion_mnist.h"
#include "frontends/data/toy2d.h"

#endif
