select o.order_id, o.customer_id, o.ordered_at::date as ordered_on, o.amount, s.status_name
from {{ source('raw', 'orders') }} as o
left join {{ ref('order_statuses') }} as s on s.status_code = o.status_code
