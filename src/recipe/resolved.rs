//! `recipe.resolved.toml`: the recipe as it ran, every default written out and every path absolute.

use toml::{Table, Value};

use super::schema::{DataSection, EvalSection, LossSection, Recipe, TeacherSection, TrainSection};

impl Recipe {
    /// The recipe as TOML with every key present (defaults filled in) and every local path
    /// absolute, so it can be run again from any directory. Loading it gives a recipe equal to
    /// `self` (`==` ignores where things were written; see [`Recipe`]). Models that exist locally
    /// are written as absolute paths; the others stay hub ids.
    pub fn to_resolved_toml(&self) -> String {
        let mut document = Table::new();
        document.insert("version".into(), integer(self.version as usize));

        let mut run = Table::new();
        run.insert("output_dir".into(), path(&self.run.output_dir));
        // TOML integers are i64; the loader only accepts seeds that fit.
        run.insert("seed".into(), Value::Integer(self.run.seed as i64));
        run.insert("device".into(), self.run.device.clone().into());
        document.insert("run".into(), run.into());

        if !self.teachers.is_empty() {
            let teachers = self
                .teachers
                .iter()
                .map(teacher)
                .map(Value::Table)
                .collect();
            document.insert("teacher".into(), Value::Array(teachers));
        }

        if let Some(cache) = &self.cache {
            let mut section = Table::new();
            section.insert("dir".into(), path(&cache.dir));
            document.insert("cache".into(), section.into());
        }

        let mut student = Table::new();
        student.insert("model".into(), self.student.model.resolved().into());
        insert_some(
            &mut student,
            "max_length",
            self.student.max_length.map(integer),
        );
        student.insert("num_labels".into(), integer(self.student.num_labels));
        insert_some(
            &mut student,
            "layers",
            self.student.layers.as_deref().map(integers),
        );
        insert_some(
            &mut student,
            "columns",
            self.student.columns.as_deref().map(|groups| match groups {
                [group] => strings(group),
                groups => Value::Array(groups.iter().map(|group| strings(group)).collect()),
            }),
        );
        document.insert("student".into(), student.into());

        let mut data = Table::new();
        data.insert("train".into(), data_section(&self.data.train).into());
        if let Some(eval) = &self.data.eval {
            data.insert("eval".into(), data_section(eval).into());
        }
        document.insert("data".into(), data.into());

        let losses = self.losses.iter().map(loss).map(Value::Table).collect();
        document.insert("loss".into(), Value::Array(losses));

        document.insert("train".into(), train(&self.train).into());

        if !self.evals.is_empty() {
            let evals = self.evals.iter().map(eval).map(Value::Table).collect();
            document.insert("eval".into(), Value::Array(evals));
        }

        let body = toml::to_string(&document)
            .expect("a table of strings, numbers, booleans, arrays and tables always serialises");
        format!(
            "# Resolved from {}: every default filled in, every local path absolute.\n{body}",
            self.source.path.display()
        )
    }
}

fn teacher(teacher: &TeacherSection) -> Table {
    let mut table = Table::new();
    table.insert("kind".into(), teacher.kind.name().into());
    table.insert("model".into(), teacher.model.resolved().into());
    insert_some(
        &mut table,
        "onnx_file",
        teacher.onnx_file.clone().map(Value::from),
    );
    insert_some(&mut table, "max_length", teacher.max_length.map(integer));
    table.insert("batch_size".into(), integer(teacher.batch_size));
    table.insert("activation".into(), teacher.activation.name().into());
    table.insert("dtype".into(), teacher.dtype.name().into());
    insert_some(
        &mut table,
        "device",
        teacher.device.clone().map(Value::from),
    );
    insert_some(
        &mut table,
        "columns",
        teacher.columns.as_deref().map(strings),
    );
    table
}

fn data_section(data: &DataSection) -> Table {
    let mut table = Table::new();
    table.insert("path".into(), data.resolved().into());
    insert_some(&mut table, "columns", data.columns.as_deref().map(strings));
    insert_some(&mut table, "label", data.label.clone().map(Value::from));
    insert_some(&mut table, "names", data.names.as_deref().map(strings));
    insert_some(&mut table, "format", data.format.clone().map(Value::from));
    insert_some(&mut table, "max_rows", data.max_rows.map(integer));
    table
}

fn loss(loss: &LossSection) -> Table {
    let mut table = Table::new();
    table.insert("kind".into(), loss.kind.clone().into());
    table.insert("labels".into(), loss.labels.name().into());
    table.insert("weight".into(), loss.weight.into());
    table.extend(loss.params.clone());
    table
}

fn train(train: &TrainSection) -> Table {
    let mut table = Table::new();
    table.insert("epochs".into(), integer(train.epochs));
    table.insert("max_steps".into(), integer(train.max_steps));
    table.insert("batch_size".into(), integer(train.batch_size));
    table.insert("learning_rate".into(), train.learning_rate.into());
    table.insert("weight_decay".into(), train.weight_decay.into());
    table.insert("warmup_ratio".into(), train.warmup_ratio.into());
    table.insert("warmup_steps".into(), integer(train.warmup_steps));
    table.insert("scheduler".into(), train.scheduler.name().into());
    table.insert("max_grad_norm".into(), train.max_grad_norm.into());
    table.insert(
        "gradient_accumulation".into(),
        integer(train.gradient_accumulation),
    );
    table.insert("shuffle".into(), train.shuffle.into());
    table.insert("batch_sampler".into(), train.batch_sampler.name().into());
    table.insert("log_every".into(), integer(train.log_every));
    table.insert("save_every".into(), integer(train.save_every));
    table.insert("eval_every".into(), integer(train.eval_every));
    // 0 (keep all) is written out: an absent key means the default limit.
    table.insert(
        "save_total_limit".into(),
        integer(train.save_total_limit.unwrap_or(0)),
    );
    table.insert("on_nan".into(), train.on_nan.name().into());
    insert_some(
        &mut table,
        "metric_for_best_model",
        train.metric_for_best_model.clone().map(Value::from),
    );
    table.insert(
        "load_best_model_at_end".into(),
        train.load_best_model_at_end.into(),
    );
    table.insert("channel_capacity".into(), integer(train.channel_capacity));
    table.insert("precision".into(), train.precision.name().into());
    table
}

fn eval(eval: &EvalSection) -> Table {
    let mut table = Table::new();
    table.insert("kind".into(), eval.kind.clone().into());
    table.insert("name".into(), eval.name.clone().into());
    insert_some(&mut table, "path", eval.path.as_deref().map(path));
    table.extend(eval.params.clone());
    table
}

/// TOML has no null: an absent option is an absent key.
fn insert_some(table: &mut Table, key: &str, value: Option<Value>) {
    if let Some(value) = value {
        table.insert(key.into(), value);
    }
}

/// Counts and sizes the loader read from TOML integers, so they fit in i64.
fn integer(number: usize) -> Value {
    Value::Integer(i64::try_from(number).expect("the loader only accepts integers that fit in i64"))
}

fn integers(numbers: &[usize]) -> Value {
    Value::Array(numbers.iter().copied().map(integer).collect())
}

fn strings(texts: &[String]) -> Value {
    Value::Array(texts.iter().cloned().map(Value::String).collect())
}

fn path(path: &std::path::Path) -> Value {
    Value::String(path.display().to_string())
}
